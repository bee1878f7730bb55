"""Start and stop private redis-server processes for tests, on free loopback ports in
temporary directories. Every runner uses it: Python imports it, other runners wrap their
command with the CLI:

    python3 tests/harness/harness.py run [--appendonly] -- COMMAND ARGS...

starts one server, exports REDPAT_TEST_URL (redis://127.0.0.1:PORT/0), REDPAT_TEST_PORT and
REDPAT_TEST_DIR, runs COMMAND, stops the server whatever happens, and exits with COMMAND's
status. Servers run with --enable-debug-command local and no persistence unless asked.
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
from typing import List, Optional

REDIS_SERVER = os.environ.get("REDPAT_REDIS_SERVER", "redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server. Use as a context manager, or call start()/stop()."""

    def __init__(self, appendonly: bool = False, port: Optional[int] = None,
                 extra: Optional[List[str]] = None) -> None:
        self.appendonly = appendonly
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.dir = tempfile.mkdtemp(prefix="redpat-redis-")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port

    def argv(self) -> List[str]:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--daemonize", "no", "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--enable-debug-command", "local", "--logfile", "redis.log"]
        if self.appendonly:
            argv += ["--appendfsync", "always"]
        return argv + self.extra

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited at start; see %s/redis.log" % self.dir)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer on port %d" % self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped server cannot exit
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command beside a private redis-server")
    run.add_argument("--appendonly", action="store_true")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    with RedisServer(appendonly=args.appendonly) as srv:
        env = dict(os.environ, REDPAT_TEST_URL=srv.url, REDPAT_TEST_PORT=str(srv.port),
                   REDPAT_TEST_DIR=srv.dir)
        proc = subprocess.Popen(command, env=env)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
