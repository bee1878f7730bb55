"""Packaging: the installed package carries py.typed and stubs that match the extension,
and a machine without hiredis gets a message naming the Debian package to install."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import redpat
from redpat import _core

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = os.path.dirname(os.path.abspath(redpat.__file__))


def stub_names() -> dict[str, set[str]]:
    with open(os.path.join(PKG, "_core.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[""].add(node.name)
            names[node.name] = {n.name for n in node.body
                                if isinstance(n, ast.FunctionDef) and not n.name.startswith("__")}
        elif isinstance(node, ast.FunctionDef):
            names[""].add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if not node.target.id.startswith("_"):
                names[""].add(node.target.id)
    return names


def test_installed_package_is_typed() -> None:
    assert os.path.exists(os.path.join(PKG, "py.typed"))
    assert os.path.exists(os.path.join(PKG, "_core.pyi"))


def test_stubs_match_the_extension() -> None:
    stubs = stub_names()
    module = {n for n in dir(_core) if not n.startswith("_") and n != "typing"}
    assert stubs[""] == module
    swig_extras = {"acquire", "append", "disown", "next", "own", "this", "thisown"}
    for cls in ("Handle", "Op"):
        public = {n for n in dir(getattr(_core, cls)) if not n.startswith("_")}
        assert stubs[cls] <= public, cls
        assert public - swig_extras <= stubs[cls], cls


def test_stubs_are_generated_from_the_descriptors() -> None:
    # The committed stubs are what scripts/gen_pyi.py makes from the extension's table.
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_pyi.py"),
                           "--check"], cwd="/", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from redpat import _records
    with open(os.path.join(PKG, "_records.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            fields = [n.target.id for n in node.body if isinstance(n, ast.AnnAssign)
                      and isinstance(n.target, ast.Name)]
            assert fields == list(getattr(_records, node.name)._fields), node.name


def test_core_ops_are_the_descriptors() -> None:
    names = {d["name"] for d in _core.descriptors()}
    assert {"lock.acquire", "ratelimit.check", "client.new", "fence.check"} <= names
    with pytest.raises(ValueError, match="no op called 'lock.nope'"):
        _core.begin("lock.nope")


@pytest.mark.skipif(os.environ.get("REDPAT_EXPECT_INSTALLED") != "1",
                    reason="only meaningful under `make test-python`")
def test_imported_from_an_installed_copy() -> None:
    assert "site-packages" in redpat.__file__
    assert not redpat.__file__.startswith(os.path.join(ROOT, "python"))


def test_missing_hiredis_names_the_debian_package() -> None:
    # `make test` provides setuptools and swig: there, a missing one is a failure, not a skip
    strict = os.environ.get("REDPAT_EXPECT_INSTALLED") == "1"
    if strict:
        import setuptools  # noqa: F401
    else:
        pytest.importorskip("setuptools")
    if shutil.which("swig") is None and not os.environ.get("SWIG"):
        assert not strict, "swig is not on PATH: make test-python must provide it"
        pytest.skip("needs swig on PATH to reach the hiredis check")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PKG_CONFIG_LIBDIR=tmp, PKG_CONFIG_PATH=tmp)
        proc = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--build-temp", os.path.join(tmp, "t"),
             "--build-lib", os.path.join(tmp, "lib")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "libhiredis-dev" in proc.stderr + proc.stdout
