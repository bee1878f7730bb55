"""Start and stop private redis-server processes for tests, on free loopback ports in
temporary directories. Every runner uses it: Python imports it (RedisServer, or
start_servers / RedisServers for several), other runners wrap their command with the CLI:

    python3 tests/harness/harness.py run [--appendonly] [--servers N] [--tls]
        [--tls-require-client-cert] -- COMMAND ARGS...

starts N servers (default 1, all at once), exports REDPAT_TEST_URL (redis://127.0.0.1:PORT/0),
REDPAT_TEST_PORT and REDPAT_TEST_DIR for the first, REDPAT_TEST_URLS and REDPAT_TEST_PIDS
(every server's URL / pid, ','-joined, in the same order), runs COMMAND, stops the servers
whatever happens, and exits with COMMAND's status. Servers run with
--enable-debug-command local (Redis >= 7; older ones allow DEBUG anyway) and no persistence
unless asked. The server binary is `redis-server` from PATH, or REDPAT_REDIS_SERVER, or
`run --redis-server PATH` (which also exports REDPAT_REDIS_SERVER to COMMAND).

With --tls, certificates are made first with `openssl` (make_tls_files: a CA, a server
certificate for localhost and 127.0.0.1, a client certificate, and other-ca.crt: a CA that
signed nothing here) in a temporary directory exported as REDPAT_TEST_TLS_DIR; every server
listens on TLS only (--port 0 --tls-port P, --tls-auth-clients optional, or yes with
--tls-require-client-cert) and the URLs are rediss://127.0.0.1:P/0.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import ssl
import time
from typing import Dict, List, Optional, Set, Tuple

REDIS_SERVER = os.environ.get("REDPAT_REDIS_SERVER", "redis-server")
# The shared matrix's cases use at most this many servers ("servers": 1..5).
MAX_SERVERS = 16
# Attempts per server when its port was taken between free_port() and the server's bind.
START_ATTEMPTS = 3


@functools.lru_cache(maxsize=None)
def server_version(binary: str) -> Tuple[int, ...]:
    """(major, minor, patch) of a redis-server binary, from its --version line."""
    out = subprocess.run([binary, "--version"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True).stdout
    m = re.search(rb"v=(\d+)\.(\d+)\.(\d+)", out)
    if not m:
        raise RuntimeError("%s --version: no version in %r" % (binary, out[:200]))
    return tuple(int(x) for x in m.groups())


OPENSSL = os.environ.get("REDPAT_OPENSSL", "openssl")
# Test certificates live as long as a test run; two days covers a clock skewed by hours.
TLS_DAYS = "2"
# One config for every certificate, so that no system openssl.cnf default slips in. The CA
# and leaf extensions are what strict verifiers (Python >= 3.13's VERIFY_X509_STRICT,
# OpenSSL 3) insist on: key usages, key identifiers, a SAN for the server name.
TLS_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = redpat-test
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


class TlsFiles:
    """The PEM files make_tls_files() wrote in dir: ca.crt signed server.crt (CN and SAN
    localhost, SAN IP 127.0.0.1) and client.crt; other-ca.crt is a CA that signed nothing
    here (a client trusting only it must fail verification). Keys: *.key, unencrypted."""

    def __init__(self, dir: str) -> None:
        self.dir = dir

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @property
    def ca(self) -> str:
        return self.path("ca.crt")

    @property
    def other_ca(self) -> str:
        return self.path("other-ca.crt")

    @property
    def server_cert(self) -> str:
        return self.path("server.crt")

    @property
    def server_key(self) -> str:
        return self.path("server.key")

    @property
    def client_cert(self) -> str:
        return self.path("client.crt")

    @property
    def client_key(self) -> str:
        return self.path("client.key")

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _openssl(dir: str, *args: str) -> None:
    proc = subprocess.run([OPENSSL, *args], cwd=dir, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args[:2]),
                                                      proc.stdout.decode(errors="replace")))


def make_tls_files(dir: Optional[str] = None) -> TlsFiles:
    """Makes the test CA, server and client certificates (P-256 keys: quick to make) with
    the openssl command in dir (default: a new temporary directory; TlsFiles.cleanup()
    removes it)."""
    dir = dir or tempfile.mkdtemp(prefix="redpat-tls-")
    with open(os.path.join(dir, "openssl.cnf"), "w") as f:
        f.write(TLS_OPENSSL_CNF)
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca, cn in (("ca", "redpat test CA"), ("other-ca", "redpat other CA")):
        _openssl(dir, "req", "-x509", "-config", "openssl.cnf", "-extensions", "ca_ext",
                 *newkey, "-keyout", ca + ".key", "-out", ca + ".crt", "-days", TLS_DAYS,
                 "-subj", "/CN=" + cn)
    for serial, (leaf, cn) in enumerate((("server", "localhost"),
                                         ("client", "redpat test client")), start=1):
        _openssl(dir, "req", "-new", "-config", "openssl.cnf", *newkey,
                 "-keyout", leaf + ".key", "-out", leaf + ".csr", "-subj", "/CN=" + cn)
        _openssl(dir, "x509", "-req", "-in", leaf + ".csr", "-CA", "ca.crt",
                 "-CAkey", "ca.key", "-set_serial", str(serial), "-days", TLS_DAYS,
                 "-extfile", "openssl.cnf", "-extensions", leaf + "_ext",
                 "-out", leaf + ".crt")
    return TlsFiles(dir)


def free_port(taken: Optional[Set[int]] = None) -> int:
    """A loopback port free right now (and not in taken: ports handed out but not bound yet)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not taken or port not in taken:
            return port


class RedisServer:
    """One redis-server. Use as a context manager, or call start()/stop()."""

    def __init__(self, appendonly: bool = False, port: Optional[int] = None,
                 extra: Optional[List[str]] = None, tls: Optional[TlsFiles] = None,
                 tls_auth_clients: str = "optional") -> None:
        """tls: listen on TLS only (port is then the TLS port), with these certificates;
        tls_auth_clients: "optional" (a client certificate is checked if sent), "yes"
        (required) or "no"."""
        self.appendonly = appendonly
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.dir = tempfile.mkdtemp(prefix="redpat-redis-")
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return "%s://127.0.0.1:%d/0" % ("rediss" if self.tls else "redis", self.port)

    @property
    def pid(self) -> int:
        """The server's process id (for SIGSTOP / SIGCONT); it must be running."""
        if self.proc is None:
            raise RuntimeError("redis-server is not running")
        return int(self.proc.pid)

    def argv(self) -> List[str]:
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", self.tls.server_cert,
                      "--tls-key-file", self.tls.server_key,
                      "--tls-ca-cert-file", self.tls.ca,
                      "--tls-auth-clients", self.tls_auth_clients]
        else:
            listen = ["--port", str(self.port)]
        argv = [REDIS_SERVER, *listen, "--bind", "127.0.0.1",
                "--dir", self.dir, "--daemonize", "no", "--save", "",
                "--appendonly", "yes" if self.appendonly else "no",
                "--logfile", "redis.log"]
        if server_version(REDIS_SERVER) >= (7, 0, 0):
            # 7.0 refuses DEBUG unless enabled; older servers have no such option
            argv += ["--enable-debug-command", "local"]
        if self.appendonly:
            argv += ["--appendfsync", "always"]
        return argv + self.extra

    def launch(self) -> None:
        """Starts the process without waiting for it (wait_ready() does): several servers
        launched first and then waited for start together."""
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as raw:
                s = raw
                if self.tls:
                    ctx = ssl.create_default_context(cafile=self.tls.ca)
                    ctx.load_cert_chain(self.tls.client_cert, self.tls.client_key)
                    s = ctx.wrap_socket(raw, server_hostname="localhost")
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except (OSError, ssl.SSLError):
            return False

    def wait_ready(self, timeout: float = 10.0) -> "RedisServer":
        """Waits until the launched server answers PING; stops it and raises if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError("redis-server exited at start; see %s/redis.log" % self.dir)
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer on port %d" % self.port)

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.launch()
        return self.wait_ready(timeout)

    def terminate(self) -> None:
        """Asks the server to exit without waiting (stop() waits): several stop together."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped server cannot exit
            self.proc.terminate()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
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


def start_servers(n: int, appendonly: bool = False, extra: Optional[List[str]] = None,
                  timeout: float = 10.0, tls: Optional[TlsFiles] = None,
                  tls_auth_clients: str = "optional") -> List[RedisServer]:
    """Starts n servers at once (all launched, then all waited for) on distinct free ports.
    A server whose port was taken meanwhile is retried on another. Raises after cleaning up
    every server if one cannot start; the caller stops the list otherwise (stop_servers)."""
    if not 1 <= n <= MAX_SERVERS:
        raise ValueError("servers: 1..%d (got %d)" % (MAX_SERVERS, n))
    taken: Set[int] = set()
    servers: List[RedisServer] = []
    try:
        for _ in range(n):
            srv = RedisServer(appendonly=appendonly, port=free_port(taken), extra=extra,
                              tls=tls, tls_auth_clients=tls_auth_clients)
            taken.add(srv.port)
            servers.append(srv)
            srv.launch()
        for i, srv in enumerate(servers):
            for attempt in range(START_ATTEMPTS):
                try:
                    srv.wait_ready(timeout)
                    break
                except RuntimeError:
                    if attempt + 1 == START_ATTEMPTS:
                        raise
                    srv.cleanup()
                    srv = RedisServer(appendonly=appendonly, port=free_port(taken),
                                      extra=extra, tls=tls, tls_auth_clients=tls_auth_clients)
                    taken.add(srv.port)
                    servers[i] = srv
                    srv.launch()
        return servers
    except BaseException:
        stop_servers(servers)
        raise


def stop_servers(servers: List[RedisServer]) -> None:
    """Stops and cleans up every server, all asked to exit first so they exit together."""
    for srv in servers:
        srv.terminate()
    for srv in servers:
        srv.cleanup()


class RedisServers:
    """n servers as a context manager: `with RedisServers(3) as servers: servers[0].url`."""

    def __init__(self, n: int, appendonly: bool = False,
                 extra: Optional[List[str]] = None, tls: Optional[TlsFiles] = None,
                 tls_auth_clients: str = "optional") -> None:
        self.n = n
        self.appendonly = appendonly
        self.extra = extra
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.servers: List[RedisServer] = []

    def __enter__(self) -> List[RedisServer]:
        self.servers = start_servers(self.n, self.appendonly, self.extra, tls=self.tls,
                                     tls_auth_clients=self.tls_auth_clients)
        return self.servers

    def __exit__(self, *exc: object) -> None:
        stop_servers(self.servers)
        self.servers = []


def server_env(servers: List[RedisServer]) -> Dict[str, str]:
    """The variables `run` exports for these servers (the first one's, and all of them)."""
    first = servers[0]
    env = {"REDPAT_TEST_URL": first.url, "REDPAT_TEST_PORT": str(first.port),
           "REDPAT_TEST_DIR": first.dir,
           "REDPAT_TEST_URLS": ",".join(s.url for s in servers),
           "REDPAT_TEST_PIDS": ",".join(str(s.pid) for s in servers)}
    if first.tls:
        env["REDPAT_TEST_TLS_DIR"] = first.tls.dir
    return env


def main(argv: List[str]) -> int:
    global REDIS_SERVER
    parser = argparse.ArgumentParser(prog="harness.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command beside private redis-servers")
    run.add_argument("--appendonly", action="store_true")
    run.add_argument("--servers", type=int, default=1, metavar="N",
                     help="how many servers to start (default 1, at most %d)" % MAX_SERVERS)
    run.add_argument("--redis-server", metavar="PATH",
                     help="the redis-server binary (default: $REDPAT_REDIS_SERVER or PATH's)")
    run.add_argument("--tls", action="store_true",
                     help="TLS-only servers with certificates made by openssl "
                          "(rediss:// URLs, REDPAT_TEST_TLS_DIR)")
    run.add_argument("--tls-require-client-cert", action="store_true",
                     help="with --tls: servers refuse clients without a certificate "
                          "(--tls-auth-clients yes; implies --tls)")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    if not 1 <= args.servers <= MAX_SERVERS:
        parser.error("--servers: 1..%d" % MAX_SERVERS)
    if args.redis_server:
        REDIS_SERVER = os.environ["REDPAT_REDIS_SERVER"] = args.redis_server
    tls = make_tls_files() if args.tls or args.tls_require_client_cert else None
    auth_clients = "yes" if args.tls_require_client_cert else "optional"
    try:
        with RedisServers(args.servers, appendonly=args.appendonly, tls=tls,
                          tls_auth_clients=auth_clients) as servers:
            env = dict(os.environ, **server_env(servers))
            proc = subprocess.Popen(command, env=env)
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
                return proc.wait()
    finally:
        if tls:
            tls.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
