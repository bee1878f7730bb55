"""Builds redpat's Python extension: SWIG makes redpat._core from bindings/redpat.i, compiled
together with the C core (core/src/*.c and the embedded Lua scripts) against the system
hiredis found with pkg-config. The sync pattern classes (redpat/_sync) are made from the
asyncio ones (redpat/_async), their one source, with unasync. Metadata: pyproject.toml."""
from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.command.build_py import build_py as _build_py

HERE = os.path.dirname(os.path.abspath(__file__))
HIREDIS_HELP = (
    "redpat needs the hiredis and OpenSSL C libraries and their headers, found through "
    "pkg-config.\nOn Debian/Ubuntu: apt-get install libhiredis-dev libssl-dev pkg-config\n"
    "(elsewhere: install hiredis >= 0.14 and OpenSSL >= 1.1.1 with their .pc files, or set "
    "PKG_CONFIG_PATH)."
)


def rel(*parts: str) -> str:
    return os.path.join(*parts)


def hiredis_flags() -> tuple[list[str], list[str]]:
    """(compile flags, link flags) for hiredis and OpenSSL (TLS), or a clear error naming the
    packages."""
    try:
        cflags = subprocess.run(["pkg-config", "--cflags", "hiredis", "openssl"], check=True,
                                capture_output=True, text=True).stdout
        libs = subprocess.run(["pkg-config", "--libs", "hiredis", "openssl"], check=True,
                              capture_output=True, text=True).stdout
    except FileNotFoundError:
        sys.exit("error: pkg-config was not found.\n" + HIREDIS_HELP)
    except subprocess.CalledProcessError:
        sys.exit("error: pkg-config does not know hiredis or openssl (are libhiredis-dev and "
                 "libssl-dev installed?).\n"
                 + HIREDIS_HELP)
    return shlex.split(cflags), shlex.split(libs)


class build_ext(_build_ext):
    """Runs SWIG and the script embedder itself, so the generated module goes straight into
    the package being built (setuptools' own SWIG support writes it beside the .i file)."""

    def build_extension(self, ext: Extension) -> None:
        swig = shutil.which(os.environ.get("SWIG", "swig"))
        if swig is None:
            sys.exit("error: swig was not found (pip installs it as a build requirement; "
                     "on Debian: apt-get install swig).")
        cflags, libs = hiredis_flags()
        temp = os.path.abspath(self.build_temp)
        os.makedirs(temp, exist_ok=True)
        package_dir = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        os.makedirs(package_dir, exist_ok=True)

        wrap = os.path.join(temp, "redpat_wrap.c")
        subprocess.run([swig, "-python", "-builtin", "-Icore/include", "-outdir", package_dir,
                        "-o", wrap, rel("bindings", "redpat.i")], check=True, cwd=HERE)
        scripts = os.path.join(temp, "rp_scripts_gen.c")
        subprocess.run(["sh", rel("core", "scripts", "embed.sh"), scripts], check=True,
                       cwd=HERE)

        core = sorted(glob.glob(os.path.join(HERE, "core", "src", "*.c")))
        if not core:
            sys.exit("error: no C sources in core/src: run the build from a full checkout.")
        ext.sources = [wrap, scripts] + core
        ext.include_dirs = [os.path.join(HERE, "core", "include"),
                            os.path.join(HERE, "core", "src")]
        ext.extra_compile_args = ["-std=gnu99", "-fvisibility=hidden"] + cflags
        ext.extra_link_args = libs + ["-lm"]  # the cache's XFetch takes a logarithm
        super().build_extension(ext)


class build_py(_build_py):
    """build_ext first: it writes the SWIG-generated redpat/_core.py that build_py packages.
    Then redpat/_sync/*.py are made from redpat/_async/*.py: async and await dropped,
    __aenter__ / __aexit__ become __enter__ / __exit__, and the asyncio executor (_aio)
    becomes the blocking one (_blocking)."""

    def run(self) -> None:
        self.run_command("build_ext")
        super().run()
        try:
            import unasync
        except ImportError:
            sys.exit("error: unasync was not found (pip installs it as a build requirement; "
                     "else: pip install unasync).")
        sources = sorted(glob.glob(os.path.join(self.build_lib, "redpat", "_async", "*.py")))
        rule = unasync.Rule("/_async/", "/_sync/", additional_replacements={"_aio": "_blocking"})
        unasync.unasync_files([f for f in sources if not f.endswith("__init__.py")], [rule])


setup(
    # SWIG's convention: the module redpat._core (generated .py) loads the C part redpat.__core.
    ext_modules=[Extension("redpat.__core", sources=[rel("bindings", "redpat.i")])],
    cmdclass={"build_ext": build_ext, "build_py": build_py},
    options={"build": {"build_base": rel("build", "python")}},
)
