"""Start and stop a private nginx with Debian's Lua module (lua-nginx-module on luajit2) for
the OpenResty tests and benchmarks: a free loopback port, a temporary prefix directory with
its own temp paths, the NDK module loaded before the Lua module (absolute paths), and a
Lua path that finds the redpat rock in a LuaJIT tree plus the test app's directories.

As a library:

    with NginxServer(tree=".luarocks/luajit", lua_dirs=["tests/openresty", "tests/lua"],
                     app="app") as ngx:
        urllib.request.urlopen(ngx.url + "/ping")

The app module must define handle() (the content handler of every location) and may define
init() (run by init_by_lua). CLI, like harness.py:

    python3 tests/harness/nginx_harness.py run --tree T --lua-dir D ... --app app -- CMD...

starts nginx, exports REDPAT_NGINX_URL (http://127.0.0.1:PORT), runs CMD, stops nginx and
exits with CMD's status. Environment variables named in --env (default DEFAULT_ENV: the test
servers' REDPAT_TEST_URL, REDPAT_TEST_URLS, REDPAT_TEST_PIDS, and REDPAT_MATRIX_DIR,
REDPAT_SCRIPTS_DIR) are passed through to the workers.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import List, Optional, Sequence

NGINX = os.environ.get("REDPAT_NGINX", "nginx")
MODULES_DIR = os.environ.get("REDPAT_NGINX_MODULES", "/usr/lib/nginx/modules")
# The environment variables passed through to the workers by default: the test servers
# (harness.py run --servers N exports the URLS and PIDS lists), the matrix and the scripts.
DEFAULT_ENV = ("REDPAT_TEST_URL", "REDPAT_TEST_URLS", "REDPAT_TEST_PIDS", "REDPAT_MATRIX_DIR",
               "REDPAT_SCRIPTS_DIR")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NginxServer:
    def __init__(self, tree: str, lua_dirs: Sequence[str], app: str = "app",
                 workers: int = 2, env: Sequence[str] = DEFAULT_ENV,
                 port: Optional[int] = None, worker_connections: int = 4096,
                 cpus: Optional[Sequence[int]] = None,
                 http_extra: Sequence[str] = ()) -> None:
        self.tree = os.path.abspath(tree)
        self.lua_dirs = [os.path.abspath(d) for d in lua_dirs]
        self.app = app
        self.workers = workers
        self.env = list(env)
        self.port = port or free_port()
        self.worker_connections = worker_connections
        self.cpus = set(cpus) if cpus else None  # CPU affinity of nginx and its workers
        # more http-block directives, e.g. the TLS tests' lua_ssl_trusted_certificate
        self.http_extra = list(http_extra)
        self.prefix = tempfile.mkdtemp(prefix="redpat-nginx-")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    @property
    def error_log(self) -> str:
        return os.path.join(self.prefix, "error.log")

    def config(self) -> str:
        p = self.prefix
        lua_path = ";".join(["%s/?.lua" % d for d in self.lua_dirs] +
                            ["%s/share/lua/5.1/?.lua" % self.tree,
                             "%s/share/lua/5.1/?/init.lua" % self.tree, ";"])
        lua_cpath = "%s/lib/lua/5.1/?.so;;" % self.tree
        lines = [
            "load_module %s/ndk_http_module.so;" % MODULES_DIR,
            "load_module %s/ngx_http_lua_module.so;" % MODULES_DIR,
            "daemon off;",
            "master_process on;",
            "worker_processes %d;" % self.workers,
            "pid %s/nginx.pid;" % p,
            "error_log %s/error.log warn;" % p,
        ]
        if os.geteuid() == 0:
            lines.append("user root;")  # the workers must read the repository and the prefix
        lines += ["env %s;" % name for name in self.env]
        lines += [
            "events { worker_connections %d; }" % self.worker_connections,
            "http {",
            "  access_log off;",
            "  client_body_temp_path %s/client_body;" % p,
            "  proxy_temp_path %s/proxy;" % p,
            "  fastcgi_temp_path %s/fastcgi;" % p,
            "  uwsgi_temp_path %s/uwsgi;" % p,
            "  scgi_temp_path %s/scgi;" % p,
            "  lua_package_path \"%s\";" % lua_path,
            "  lua_package_cpath \"%s\";" % lua_cpath,
            "  lua_socket_log_errors off;",
            "  lua_check_client_abort on;",  # redpat.cancel_on_abort (tests/openresty)
            *("  %s" % line for line in self.http_extra),
            "  init_by_lua_block {",
            "    local app = require \"%s\"" % self.app,
            "    if app.init then app.init() end",
            "  }",
            "  server {",
            "    listen 127.0.0.1:%d;" % self.port,
            "    location / {",
            "      content_by_lua_block { require(\"%s\").handle() }" % self.app,
            "    }",
            "  }",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "NginxServer":
        conf = os.path.join(self.prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            os.makedirs(os.path.join(self.prefix, d), exist_ok=True)
        # -e: the early error log, before the config's error_log applies
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", conf,
                                      "-e", os.path.join(self.prefix, "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=self._pin)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited at start:\n" + self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=0.5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        log = self.log_tail()
        self.stop()
        raise RuntimeError("nginx did not answer on port %d:\n%s" % (self.port, log))

    def _pin(self) -> None:
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.error_log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no error log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> "NginxServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="nginx_harness.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command beside a private nginx")
    run.add_argument("--tree", required=True, help="LuaRocks tree holding the redpat rock (LuaJIT)")
    run.add_argument("--lua-dir", action="append", default=[], help="extra Lua module directory")
    run.add_argument("--app", default="app", help="Lua module with handle() and init()")
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--env", action="append", default=None)
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    env_names = args.env or list(DEFAULT_ENV)
    with NginxServer(args.tree, args.lua_dir, app=args.app, workers=args.workers,
                     env=env_names) as srv:
        env = dict(os.environ, REDPAT_NGINX_URL=srv.url, REDPAT_NGINX_ERROR_LOG=srv.error_log)
        proc = subprocess.Popen(command, env=env)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
