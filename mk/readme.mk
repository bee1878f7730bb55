# The README's install recipes run as written (scripts/readme_recipes.sh), each in a clean
# copy of the tree, that no other target runs already: the Python one (venv, `pip install .`,
# then a lock taken with what it installed). The C recipe runs in test-c
# (scripts/install_check.sh), the LuaRocks ones build the Lua tests' trees (mk/lua.mk
# lua-rock) and the source-rock one is test-lua-rock.
# Included by the top-level Makefile, which defines ROOT, BUILD, LOGS, bootstrap.
TEST_TARGETS += test-readme-python

.PHONY: test-readme-python

test-readme-python: bootstrap
	@mkdir -p $(LOGS)
	sh $(ROOT)/scripts/readme_recipes.sh --work $(BUILD)/readme-python python 2>&1 | \
	  tee $(LOGS)/readme-python.log
