"""Packaging: the installed package carries py.typed and stubs that match the extension,
the wheel and the sdist carry complete metadata (MIT, the README), the sdist builds alone,
and a machine without hiredis gets a message naming the Debian package to install."""
from __future__ import annotations

import ast
import email
import email.message
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
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


def check_metadata(meta: email.message.Message, what: str) -> None:
    """The core metadata a wheel or an sdist must carry: MIT (an SPDX expression and the
    license file) and the README as the markdown long description."""
    assert meta["License-Expression"] == "MIT", what
    assert "LICENSE" in meta.get_all("License-File", []), what
    assert meta["Description-Content-Type"] == "text/markdown", what
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert meta.get_payload().strip() == readme.strip(), what
    classifiers = meta.get_all("Classifier", [])
    for c in ("Programming Language :: Python :: 3", "Programming Language :: C",
              "Operating System :: POSIX :: Linux", "Topic :: Database"):
        assert c in classifiers, (what, c)


def test_installed_wheel_metadata_is_complete() -> None:
    # what pip installed came from the wheel it built: its METADATA and license file
    dist = importlib.metadata.distribution("redpat")
    meta = email.message_from_string(dist.read_text("METADATA") or "")
    check_metadata(meta, "wheel")
    assert any(p.name == "LICENSE" for p in dist.files or []), "LICENSE not in the wheel"


def test_sdist_builds_alone_and_carries_the_metadata() -> None:
    # `python -m build --sdist` makes its own fresh venv (build isolation) from pyproject's
    # build requirements; run on a copy, since setuptools writes egg-info into the tree
    strict = os.environ.get("REDPAT_EXPECT_INSTALLED") == "1"
    if strict:
        import build  # noqa: F401
    else:
        pytest.importorskip("build")
    skip = shutil.ignore_patterns(".git", "build", ".venv", ".luarocks", "*.egg-info",
                                  "__pycache__", "*.o", "*.so")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src")
        shutil.copytree(ROOT, src, ignore=skip)
        out = os.path.join(tmp, "dist")
        proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", out, src],
                              cwd=tmp, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (name,) = os.listdir(out)
        with tarfile.open(os.path.join(out, name)) as tar:
            top = name[:-len(".tar.gz")]
            members = set(tar.getnames())
            assert f"{top}/LICENSE" in members and f"{top}/README.md" in members
            pkg_info = tar.extractfile(f"{top}/PKG-INFO")
            assert pkg_info is not None
            meta = email.message_from_string(pkg_info.read().decode("utf-8"))
    check_metadata(meta, "sdist")


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
