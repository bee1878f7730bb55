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

Cluster mode (Redis Cluster):

    python3 tests/harness/harness.py run --cluster [--servers K] [--replicas R]
        [--node-timeout MS] [--tls] [--appendonly] [--redis-server PATH] -- COMMAND ARGS...

starts K independent clusters (default 1) of 3 masters and R replicas per master (default
0): every node a redis-server with --cluster-enabled yes and its nodes.conf in its own
temporary directory, on a port P with P + 10000 (the cluster bus) free too, P < 55536;
each cluster made with `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`
(redis-cli beside the server binary, or $REDPAT_REDIS_CLI), then waited for until every
node says cluster_state:ok, every node's CLUSTER SLOTS names the same masters, and every
replica is synced and known as such by every node. --cluster-node-timeout: 2000 ms with
replicas (a failover takes ~3-4 s), 30000 ms without (no failover is possible; a long
SIGSTOP of a whole cluster must not get its nodes marked failing); --node-timeout
overrides. Replicas fail over however stale (--cluster-replica-validity-factor 0) and
never migrate between masters. Exported to COMMAND:
  REDPAT_TEST_CLUSTER=1, REDPAT_TEST_CLUSTER_REPLICAS=R
  REDPAT_TEST_URLS   the K cluster URLs ','-joined, each redis+cluster://H:P,H:P,H:P (its
                     three masters as seeds); split them with split_urls(): at ',' only
                     where the next piece contains "://"
  REDPAT_TEST_NODES  per cluster its node URLs (redis://127.0.0.1:P, no db), clusters by
                     ',' and nodes by ' ': the 3 masters first, then the replicas (roles as
                     started; a failover changes them)
  REDPAT_TEST_PIDS   the same shape with the nodes' pids
  REDPAT_TEST_URL / _PORT / _DIR   the first cluster's URL / its first node's port / dir
Without --cluster REDPAT_TEST_NODES is exported too: the server URLs, ',' between servers.
--tls works with --cluster: nodes on TLS only with --tls-cluster yes and --tls-replication
yes (bus and replication links dial with client.crt), URLs rediss+cluster:// and rediss://;
--tls-require-client-cert with --cluster is refused.

Python API (tests import this module): start_cluster(masters=3, replicas=0, tls=None) ->
RedisCluster (a context manager; start_clusters(k, ...) / stop_clusters for several), with
.nodes (ClusterNode: host, port, addr, url, pid, role, node_id; masters first), .url(),
.masters(), .slot_owner(slot), .key_owner(key), .flush_all(), .migrate_slot(slot, to_node,
pause=S) (CLUSTER SETSLOT IMPORTING / MIGRATING, then, after `pause` seconds of ASK
window, MIGRATE of the slot's keys in batches, then SETSLOT NODE on every master; safe
while clients loop on the slot's keys), .kill_master(node) (SIGKILL) and
.wait_failover(old_master) (until a replica serves its slots and every live node agrees),
.restart_node(node), .wait_consistent(), .stop(); key_slot(key); attach_cluster(address)
for a cluster started elsewhere (no pids of its own: kill uses INFO's process_id).

For C tests (and shells), the same on a running cluster, named by any node's address:
    harness.py cluster-slot-owner --node-url URL (--slot N | --key K)   prints host:port
    harness.py cluster-migrate --node-url URL (--slot N | --key K) --to HOST:PORT
        [--pause S] [--batch N]       moves one slot with its keys (as migrate_slot)
    harness.py cluster-failover --node-url URL --master HOST:PORT [--timeout S]
        SIGKILLs that master, waits for its replacement, prints "HOST:PORT SECONDS"
(--tls-dir DIR for TLS nodes). C tests may just as well shell out to redis-cli.
`harness.py cluster-selftest [--tls]` exercises all of it (~15 s).
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
from typing import Any, Dict, List, Optional, Set, Tuple

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
           "REDPAT_TEST_PIDS": ",".join(str(s.pid) for s in servers),
           "REDPAT_TEST_NODES": ",".join(s.url for s in servers)}
    if first.tls:
        env["REDPAT_TEST_TLS_DIR"] = first.tls.dir
    return env


# --- Redis Cluster -----------------------------------------------------------------------
# Cluster nodes listen on P (clients) and P + 10000 (the cluster bus, fixed by Redis); both
# must be free and below 65536, so P is drawn from this range rather than from the kernel's
# ephemeral ports (which reach 60999).
CLUSTER_PORT_MIN, CLUSTER_PORT_MAX = 20000, 55535
CLUSTER_BUS_OFFSET = 10000
CLUSTER_SLOTS = 16384
# --cluster-node-timeout. With replicas (failover tests): 2000 ms, so that a killed master
# is replaced in ~3-4 s, while a whole cluster SIGSTOPped for a few hundred ms (a matrix
# stop/cont) or nodes starved for a second on a loaded 2-core machine do not get marked
# failing (1000 ms flapped in such conditions). Without replicas no failover can happen,
# and a node marked FAIL would only turn the cluster down (CLUSTERDOWN on every slot) for
# a while after a long stop: the matrix stops whole clusters for up to ~6 s, so 30000 ms.
NODE_TIMEOUT_REPLICAS_MS = 2000
NODE_TIMEOUT_NO_REPLICAS_MS = 30000


class RedisError(Exception):
    """An error reply (the text after '-')."""


class _Conn:
    """A minimal blocking RESP2 connection (the harness has no client library)."""

    def __init__(self, host: str, port: int, tls: Optional[TlsFiles] = None,
                 timeout: float = 5.0) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=tls.ca)
            ctx.load_cert_chain(tls.client_cert, tls.client_key)
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self.buf = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "_Conn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self) -> Any:
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError("bad reply line %r" % line[:80])

    def call(self, *args: object) -> Any:
        """Sends one command; returns its reply, raising RedisError for an error reply."""
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        r = self._reply()
        if isinstance(r, RedisError):
            raise r
        return r


def key_slot(key: "bytes | str") -> int:
    """The hash slot of a key: CRC16 (XMODEM) mod 16384 of the key, or of its hash tag (the
    part between the first '{' and the next '}', when not empty)."""
    import binascii
    k = key.encode() if isinstance(key, str) else key
    start = k.find(b"{")
    if start >= 0:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            k = k[start + 1:end]
    return binascii.crc_hqx(k, 0) % CLUSTER_SLOTS


def free_cluster_port(taken: Set[int]) -> int:
    """A port P with P and P + 10000 both free now and not in taken (ports handed out but not
    bound yet, bus ports included), P + 10000 below 65536."""
    import random
    for _ in range(1000):
        port = random.randint(CLUSTER_PORT_MIN, CLUSTER_PORT_MAX)
        if {port, port + CLUSTER_BUS_OFFSET} & taken or \
                {port - CLUSTER_BUS_OFFSET, port + 2 * CLUSTER_BUS_OFFSET} & taken:
            continue
        try:
            for p in (port, port + CLUSTER_BUS_OFFSET):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair (P, P+10000) in %d..%d"
                       % (CLUSTER_PORT_MIN, CLUSTER_PORT_MAX))


def redis_cli_binary() -> str:
    """redis-cli: $REDPAT_REDIS_CLI, else the one beside the redis-server binary, else PATH's."""
    if os.environ.get("REDPAT_REDIS_CLI"):
        return os.environ["REDPAT_REDIS_CLI"]
    server = shutil.which(REDIS_SERVER) or REDIS_SERVER
    beside = os.path.join(os.path.dirname(os.path.abspath(server)), "redis-cli")
    return beside if os.path.exists(beside) else "redis-cli"


class ClusterNode:
    """One node of a cluster: its address, pid, role ("master" / "replica"), node id, and
    the RedisServer running it (None for a cluster attached to rather than started)."""

    def __init__(self, host: str, port: int, server: Optional[RedisServer] = None,
                 tls: Optional[TlsFiles] = None) -> None:
        self.host = host
        self.port = port
        self.server = server
        self.tls = tls
        self.node_id = ""
        self.role = "master"
        self._pid: Optional[int] = None
        self.dead = False  # SIGKILLed by kill_master / kill_node
        self.served: List[Tuple[int, int]] = []  # its slot ranges when kill_master killed it

    @property
    def addr(self) -> str:
        return "%s:%d" % (self.host, self.port)

    @property
    def url(self) -> str:
        """The node's own URL, for commands to this node only (per-case resets)."""
        return "%s://%s:%d" % ("rediss" if self.tls else "redis", self.host, self.port)

    @property
    def pid(self) -> int:
        if self.server is not None and self.server.proc is not None:
            return self.server.pid
        if self._pid is None:
            self._pid = int(self.info("server")["process_id"])
        return self._pid

    def conn(self, timeout: float = 5.0) -> _Conn:
        return _Conn(self.host, self.port, self.tls, timeout)

    def call(self, *args: object, timeout: float = 5.0) -> Any:
        with self.conn(timeout) as c:
            return c.call(*args)

    def info(self, section: str = "") -> Dict[str, str]:
        text = self.call("INFO", section) if section else self.call("INFO")
        out = {}
        for line in bytes(text).decode().splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def cluster_info(self) -> Dict[str, str]:
        text = bytes(self.call("CLUSTER", "INFO")).decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def __repr__(self) -> str:
        return "<ClusterNode %s %s %s pid=%s>" % (self.addr, self.role, self.node_id[:8],
                                                 self._pid or (self.server and self.server.proc
                                                               and self.server.pid))


def _slots_view(node: ClusterNode) -> Tuple:
    """CLUSTER SLOTS of node, normalized: sorted (start, end, master "host:port"). Replicas
    are left out: CLUSTER SLOTS lists a replica only once its replication offset is
    non-zero in the gossip (on an idle master, after its first replication PING, ~10 s)."""
    reply = node.call("CLUSTER", "SLOTS")
    out = []
    for r in reply:
        start, end, master = int(r[0]), int(r[1]), r[2]
        out.append((start, end, "%s:%d" % (master[0].decode(), int(master[1]))))
    return tuple(sorted(out))


class RedisCluster:
    """A Redis Cluster of masters (+ replicas each), started by start_cluster() (or found by
    attach_cluster()). Nodes lists the masters first, then the replicas, as started; roles
    and node ids are refreshed by refresh() (after a failover the lists keep their order;
    role tells who is master now)."""

    def __init__(self, nodes: List[ClusterNode], replicas: int = 0,
                 tls: Optional[TlsFiles] = None, dir: Optional[str] = None) -> None:
        self.nodes = nodes
        self.replicas = replicas
        self.tls = tls
        self.dir = dir
        self.started_in = 0.0  # seconds from launch to a converged cluster (start_cluster)

    # -- views ------------------------------------------------------------------------------
    def live(self) -> List[ClusterNode]:
        return [n for n in self.nodes if not n.dead]

    def masters(self) -> List[ClusterNode]:
        return [n for n in self.nodes if n.role == "master" and not n.dead]

    def replicas_of(self, master: ClusterNode) -> List[ClusterNode]:
        self.refresh()
        ids = self._nodes_table(self.live()[0])
        return [n for n in self.live() if ids.get(n.node_id, ("", ""))[1] == master.node_id]

    def url(self) -> str:
        """The cluster URL: redis+cluster:// (rediss+cluster:// with TLS) and every master
        started as a seed."""
        seeds = [n for n in self.nodes[:len(self.nodes) // (1 + self.replicas)]]
        return "%s://%s" % ("rediss+cluster" if self.tls else "redis+cluster",
                            ",".join(n.addr for n in seeds))

    def node(self, addr: "ClusterNode | str") -> ClusterNode:
        """The node at "host:port" (or a node itself)."""
        if isinstance(addr, ClusterNode):
            return addr
        for n in self.nodes:
            if n.addr == addr or "%s:%d" % ("127.0.0.1", n.port) == addr:
                return n
        raise KeyError("no node %s in this cluster" % addr)

    def _nodes_table(self, via: ClusterNode) -> Dict[str, Tuple[str, str]]:
        """node id -> (flags, master id or "-") from CLUSTER NODES of via."""
        text = bytes(via.call("CLUSTER", "NODES")).decode()
        out = {}
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 4:
                out[f[0]] = (f[2], f[3])
        return out

    def refresh(self) -> None:
        """Reads each live node's id and role from itself."""
        for n in self.live():
            n.node_id = bytes(n.call("CLUSTER", "MYID")).decode()
            role = n.call("ROLE")[0]
            n.role = "master" if bytes(role) == b"master" else "replica"

    def slot_owner(self, slot: int, via: Optional[ClusterNode] = None) -> ClusterNode:
        """The master serving slot, as CLUSTER SLOTS of via (default: the first live master)
        says."""
        via = via or self.masters()[0]
        for start, end, master in _slots_view(via):
            if start <= slot <= end:
                return self.node(master)
        raise KeyError("slot %d is not served (per %s)" % (slot, via.addr))

    def key_owner(self, key: "bytes | str") -> ClusterNode:
        return self.slot_owner(key_slot(key))

    # -- state ------------------------------------------------------------------------------
    def views_agree(self) -> Optional[Tuple]:
        """The common CLUSTER SLOTS view when every live node has cluster_state:ok, covers
        every slot and agrees with the others; None otherwise."""
        views = set()
        try:
            for n in self.live():
                if n.cluster_info().get("cluster_state") != "ok":
                    return None
                views.add(_slots_view(n))
        except (OSError, RedisError, ConnectionError):
            return None
        if len(views) != 1:
            return None
        view = views.pop()
        if sum(e - s + 1 for s, e, _ in view) != CLUSTER_SLOTS:
            return None
        return view

    def wait_consistent(self, timeout: float = 30.0, replicas_synced: bool = True) -> Tuple:
        """Waits until views_agree() and (replicas_synced) every live replica has its master
        link up and every live node's CLUSTER NODES shows it replicating that master;
        returns the view. Raises on timeout."""
        deadline = time.monotonic() + timeout
        last = "no view yet"
        while time.monotonic() < deadline:
            view = self.views_agree()
            if view is None:
                last = "nodes disagree on the slots or cluster_state is not ok"
            elif not replicas_synced:
                return view
            else:
                try:
                    self.refresh()
                    want = {}
                    for n in self.live():
                        if n.role == "replica":
                            info = n.info("replication")
                            if info.get("master_link_status") != "up":
                                raise RuntimeError("replica %s not synced" % n.addr)
                            want[n.node_id] = "%s:%s" % (info["master_host"], info["master_port"])
                    ids = {n.addr: n.node_id for n in self.live()}
                    for n in self.live():
                        table = self._nodes_table(n)
                        for rid, maddr in want.items():
                            flags, master_id = table.get(rid, ("", ""))
                            if "slave" not in flags or master_id != ids.get(maddr):
                                raise RuntimeError("%s does not see %s replicating %s yet"
                                                   % (n.addr, rid[:8], maddr))
                    return view
                except (OSError, RedisError, ConnectionError, RuntimeError, KeyError) as e:
                    last = str(e)
            time.sleep(0.05)
        raise RuntimeError("cluster did not converge in %.0f s: %s" % (timeout, last))

    def flush_all(self) -> None:
        """FLUSHALL on every live master (replicas follow) and CONFIG SET maxmemory 0 on
        every live node (the matrix's per-case reset)."""
        for n in self.live():
            n.call("CONFIG", "SET", "maxmemory", "0")
        for n in self.masters():
            n.call("FLUSHALL")

    # -- moving a slot ------------------------------------------------------------------------
    def migrate_slot(self, slot: int, to_node: "ClusterNode | str", pause: float = 0.0,
                     batch: int = 100, between_batches: float = 0.0,
                     replace: bool = False, timeout_ms: int = 5000,
                     wait: bool = True) -> int:
        """Moves one hash slot to to_node (a master) the way Redis documents it, usable while
        clients work on the slot's keys: SETSLOT IMPORTING on the target, SETSLOT MIGRATING
        on the source, then (after `pause` seconds: the ASK window, the keys all still on
        the source) MIGRATE of the slot's keys in batches of `batch` (sleeping
        `between_batches` between them) until the source has none left, then SETSLOT NODE
        on the target, the source and every other master. With wait, returns once every live
        node agrees on the new owner. Returns how many keys moved. replace: MIGRATE ...
        REPLACE (a key also on the target is overwritten instead of failing BUSYKEY)."""
        dst = self.node(to_node)
        self.refresh()
        src = self.slot_owner(slot)
        if src.addr == dst.addr:
            return 0
        dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
        src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)
        if pause > 0:
            time.sleep(pause)
        moved = 0
        with src.conn(timeout=timeout_ms / 1000 + 5) as c:
            while True:
                keys = c.call("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                args: List[object] = ["MIGRATE", dst.host, dst.port, "", 0, timeout_ms]
                if replace:
                    args.append("REPLACE")
                c.call(*args, "KEYS", *keys)
                moved += len(keys)
                if between_batches > 0:
                    time.sleep(between_batches)
        dst.call("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
        src.call("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
        for n in self.masters():
            if n.addr not in (src.addr, dst.addr):
                try:
                    n.call("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
                except RedisError:
                    pass  # it learns from the bumped epoch anyway
        if wait:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if all(self.slot_owner(slot, via=n).addr == dst.addr for n in self.live()):
                        break
                except (KeyError, OSError, RedisError, ConnectionError):
                    pass
                time.sleep(0.02)
            else:
                raise RuntimeError("nodes do not agree that slot %d moved to %s"
                                   % (slot, dst.addr))
        return moved

    # -- failures -------------------------------------------------------------------------
    def kill_node(self, node: "ClusterNode | str") -> None:
        """SIGKILL a node (SIGCONT first: a stopped process dies as well)."""
        node = self.node(node)
        pid = node.pid
        if node.server is not None and node.server.proc is not None:
            node.server.kill()
        else:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        node.dead = True

    def kill_master(self, node: "ClusterNode | str") -> None:
        """SIGKILL a master; wait_failover(node) then waits for its replacement."""
        node = self.node(node)
        self.refresh()
        if node.role != "master":
            raise ValueError("%s is not a master" % node.addr)
        node.served = [(s, e) for s, e, m in _slots_view(node) if m == node.addr]
        self.kill_node(node)

    def wait_failover(self, old_master: "ClusterNode | str",
                      timeout: float = 30.0) -> ClusterNode:
        """After kill_master(old_master): waits until another node serves every slot the old
        master served and every live node agrees (cluster_state:ok, one CLUSTER SLOTS view,
        covering every slot, the old master in it nowhere), and the roles are refreshed;
        returns the new master."""
        old = self.node(old_master)
        served = old.served
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.views_agree()
            if view is not None and all(old.addr != m for _, _, m in view):
                try:
                    self.refresh()
                except (OSError, RedisError, ConnectionError):
                    time.sleep(0.05)
                    continue
                if served:
                    slot = served[0][0]
                    for s, e, m in view:
                        if s <= slot <= e:
                            return self.node(m)
                return self.masters()[0]
            time.sleep(0.05)
        raise RuntimeError("no failover of %s within %.0f s" % (old.addr, timeout))

    def restart_node(self, node: "ClusterNode | str", timeout: float = 10.0) -> None:
        """Starts a killed node again on its port and directory (its nodes.conf): it
        rejoins, a replica of whoever took its slots."""
        node = self.node(node)
        if node.server is None:
            raise RuntimeError("only nodes this harness started can be restarted")
        node.server.start(timeout)
        node.dead = False

    # -- lifecycle ------------------------------------------------------------------------
    def stop(self) -> None:
        """Stops every node this harness started and removes its directories."""
        stop_servers([n.server for n in self.nodes if n.server is not None])
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RedisCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_node_args(node_timeout_ms: int, tls: Optional[TlsFiles],
                      replicas: int) -> List[str]:
    args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            # no replica moves to an orphaned master behind the tests' back
            "--cluster-allow-replica-migration", "no"]
    if replicas:
        # a replica fails over however long its master link was down (a SIGSTOP); a
        # replica's full sync starts at once (Redis 7 waits 5 s for more replicas to come)
        args += ["--cluster-replica-validity-factor", "0", "--repl-diskless-sync-delay", "0"]
    if tls is not None:
        # the bus and replication links are TLS both ways: a node dials with the client
        # certificate (the server one is for serverAuth only)
        args += ["--tls-cluster", "yes", "--tls-replication", "yes",
                 "--tls-client-cert-file", tls.client_cert,
                 "--tls-client-key-file", tls.client_key]
    return args


def start_clusters(k: int, masters: int = 3, replicas: int = 0,
                   tls: Optional[TlsFiles] = None, appendonly: bool = False,
                   node_timeout_ms: Optional[int] = None,
                   timeout: float = 60.0) -> List[RedisCluster]:
    """Starts k independent clusters of `masters` masters and `replicas` replicas per master,
    all nodes launched at once, each created with redis-cli --cluster create (in parallel),
    and waits until each has converged (RedisCluster.wait_consistent). Stops everything and
    raises if one cannot start; the caller stops them otherwise (stop_clusters)."""
    if not 1 <= k <= MAX_SERVERS:
        raise ValueError("clusters: 1..%d (got %d)" % (MAX_SERVERS, k))
    if masters < 3:
        raise ValueError("a Redis Cluster needs at least 3 masters")
    t0 = time.monotonic()
    if node_timeout_ms is None:
        node_timeout_ms = NODE_TIMEOUT_REPLICAS_MS if replicas else NODE_TIMEOUT_NO_REPLICAS_MS
    extra = cluster_node_args(node_timeout_ms, tls, replicas)
    taken: Set[int] = set()
    clusters: List[RedisCluster] = []
    try:
        server_version(REDIS_SERVER)  # fails here, before any directory is made
        for _ in range(k):
            c = RedisCluster([], replicas, tls, tempfile.mkdtemp(prefix="redpat-cluster-"))
            clusters.append(c)
            for _ in range(masters * (1 + replicas)):
                port = free_cluster_port(taken)
                taken |= {port, port + CLUSTER_BUS_OFFSET}
                srv = RedisServer(appendonly=appendonly, port=port, extra=extra, tls=tls)
                c.nodes.append(ClusterNode("127.0.0.1", port, srv, tls))
                srv.launch()
        for c in clusters:
            for i, n in enumerate(c.nodes):
                for attempt in range(START_ATTEMPTS):
                    assert n.server is not None
                    try:
                        n.server.wait_ready()
                        break
                    except RuntimeError:
                        if attempt + 1 == START_ATTEMPTS:
                            raise
                        n.server.cleanup()
                        port = free_cluster_port(taken)
                        taken |= {port, port + CLUSTER_BUS_OFFSET}
                        srv = RedisServer(appendonly=appendonly, port=port, extra=extra, tls=tls)
                        n = c.nodes[i] = ClusterNode("127.0.0.1", port, srv, tls)
                        srv.launch()
        cli = redis_cli_binary()
        creates = []
        for c in clusters:
            assert c.dir is not None
            argv = [cli]
            if tls:
                argv += ["--tls", "--cacert", tls.ca, "--cert", tls.client_cert,
                         "--key", tls.client_key]
            argv += ["--cluster", "create", *(n.addr for n in c.nodes),
                     "--cluster-replicas", str(replicas), "--cluster-yes"]
            log = open(os.path.join(c.dir, "create.log"), "wb")
            creates.append((c, subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT), log))
        for c, proc, log in creates:
            assert c.dir is not None
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = -1
            log.close()
            if rc != 0:
                with open(os.path.join(c.dir, "create.log"), "rb") as f:
                    out = f.read().decode(errors="replace")
                raise RuntimeError("redis-cli --cluster create failed (%s):\n%s"
                                   % (rc, out[-2000:]))
        deadline = time.monotonic() + timeout
        for c in clusters:
            c.wait_consistent(max(1.0, deadline - time.monotonic()))
            c.refresh()
            # nodes: masters first, then replicas (redis-cli chose the roles)
            c.nodes.sort(key=lambda n: n.role != "master")
            c.started_in = time.monotonic() - t0
        return clusters
    except BaseException:
        stop_clusters(clusters)
        raise


def start_cluster(masters: int = 3, replicas: int = 0, tls: Optional[TlsFiles] = None,
                  appendonly: bool = False, node_timeout_ms: Optional[int] = None,
                  timeout: float = 60.0) -> RedisCluster:
    """One cluster (see start_clusters); a context manager: `with start_cluster(replicas=1)
    as c: c.url()`."""
    return start_clusters(1, masters, replicas, tls, appendonly, node_timeout_ms, timeout)[0]


def stop_clusters(clusters: List[RedisCluster]) -> None:
    """Stops every node of every cluster, all asked to exit first."""
    servers = [n.server for c in clusters for n in c.nodes if n.server is not None]
    stop_servers(servers)
    for c in clusters:
        if c.dir:
            shutil.rmtree(c.dir, ignore_errors=True)


def attach_cluster(url: str, tls: Optional[TlsFiles] = None) -> RedisCluster:
    """A RedisCluster for a running cluster, found from one node ("host:port", a redis://
    node URL or a redis+cluster:// URL: its first seed): every node of its CLUSTER NODES
    (masters first). stop() stops nothing; kill_node() signals the node's pid (INFO)."""
    m = re.match(r"^(?:[a-z+]+://)?(?:[^@/]*@)?\[?([^\]/,]+?)\]?:(\d+)", url)
    if not m:
        raise ValueError("not a node address: %r" % url)
    if url.startswith("rediss") and tls is None:
        raise ValueError("a TLS node needs tls=TlsFiles(...)")
    first = ClusterNode(m.group(1), int(m.group(2)), tls=tls)
    text = bytes(first.call("CLUSTER", "NODES")).decode()
    nodes = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 8 or "noaddr" in f[2] or "handshake" in f[2]:
            continue
        addr = f[1].split("@")[0]
        host, port = addr.rsplit(":", 1)
        n = ClusterNode(host or first.host, int(port), tls=tls)
        n.node_id = f[0]
        n.role = "master" if "master" in f[2] else "replica"
        n.dead = "fail" in f[2] and "fail?" not in f[2]
        nodes.append(n)
    nodes.sort(key=lambda n: n.role != "master")
    masters = sum(1 for n in nodes if n.role == "master")
    c = RedisCluster(nodes, replicas=max(0, len(nodes) // max(1, masters) - 1), tls=tls)
    return c


def cluster_env(clusters: List[RedisCluster]) -> Dict[str, str]:
    """The variables `run --cluster` exports: see the module's docstring."""
    first = clusters[0].nodes[0]
    env = {"REDPAT_TEST_CLUSTER": "1",
           "REDPAT_TEST_CLUSTER_REPLICAS": str(clusters[0].replicas),
           "REDPAT_TEST_URL": clusters[0].url(),
           "REDPAT_TEST_PORT": str(first.port),
           "REDPAT_TEST_DIR": first.server.dir if first.server else "",
           "REDPAT_TEST_URLS": ",".join(c.url() for c in clusters),
           "REDPAT_TEST_NODES": ",".join(" ".join(n.url for n in c.nodes) for c in clusters),
           "REDPAT_TEST_PIDS": ",".join(" ".join(str(n.pid) for n in c.nodes)
                                        for c in clusters)}
    if clusters[0].tls:
        env["REDPAT_TEST_TLS_DIR"] = clusters[0].tls.dir
    return env


def split_urls(urls: str) -> List[str]:
    """REDPAT_TEST_URLS split into endpoints: at ',' only where the next piece has "://"
    (a cluster URL's seed list has ',' too)."""
    out: List[str] = []
    for piece in urls.split(","):
        if out and "://" not in piece:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def cluster_selftest(tls: bool = False) -> int:
    """`harness.py cluster-selftest`: a 3+3 cluster; a slot with 250 keys moved while a
    client INCRs a key of it (following MOVED / ASK by hand), every key and increment
    checked on the target; a master SIGKILLed and its replica's takeover waited for; the
    old master restarted (it rejoins as a replica). Prints the timings; 0 when all held."""
    import threading
    files = make_tls_files() if tls else None
    t0 = time.monotonic()
    c = start_cluster(replicas=1, tls=files)
    try:
        print("cluster of %d nodes up in %.2f s: %s" % (len(c.nodes), time.monotonic() - t0,
                                                       c.url()))
        key = "mx:lock:{res}"
        slot = key_slot(key)
        src = c.slot_owner(slot)
        dst = [m for m in c.masters() if m.addr != src.addr][0]
        for i in range(250):
            src.call("SET", "mx:{res}:%d" % i, i)
        stats = {"ok": 0, "moved": 0, "ask": 0, "tryagain": 0}
        stop = threading.Event()
        errors: List[BaseException] = []

        def loop() -> None:
            conns: Dict[str, _Conn] = {}
            target = src
            try:
                while not stop.is_set():
                    cn = conns.get(target.addr) or conns.setdefault(target.addr, target.conn())
                    try:
                        cn.call("INCR", "mx:{res}:ctr")
                        stats["ok"] += 1
                    except RedisError as e:
                        words = str(e).split()
                        if words[0] == "MOVED":
                            stats["moved"] += 1
                            target = c.node(words[2])
                        elif words[0] == "ASK":
                            stats["ask"] += 1
                            a = c.node(words[2])
                            an = conns.get(a.addr) or conns.setdefault(a.addr, a.conn())
                            an.call("ASKING")
                            an.call("INCR", "mx:{res}:ctr")
                            stats["ok"] += 1
                        elif words[0] == "TRYAGAIN":
                            stats["tryagain"] += 1
                        else:
                            raise
            except BaseException as e:
                errors.append(e)
            finally:
                for cn in conns.values():
                    cn.close()

        th = threading.Thread(target=loop)
        th.start()
        time.sleep(0.2)
        t1 = time.monotonic()
        moved = c.migrate_slot(slot, dst, pause=0.2, batch=50)
        print("slot %d moved %s -> %s with %d keys in %.2f s (0.2 s of it the ASK window)"
              % (slot, src.addr, dst.addr, moved, time.monotonic() - t1))
        time.sleep(0.2)
        stop.set()
        th.join()
        if errors:
            raise errors[0]
        print("client meanwhile: %(ok)d INCRs, %(moved)d MOVED, %(ask)d ASK, "
              "%(tryagain)d TRYAGAIN" % stats)
        assert all(c.slot_owner(slot, via=n).addr == dst.addr for n in c.live())
        assert dst.call("EXISTS", *["mx:{res}:%d" % i for i in range(250)]) == 250
        assert src.call("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        assert int(dst.call("GET", "mx:{res}:ctr")) == stats["ok"], "lost increments"
        c.flush_all()
        assert all(m.call("DBSIZE") == 0 for m in c.masters())
        t2 = time.monotonic()
        c.kill_master(dst)
        new = c.wait_failover(dst)
        print("master %s SIGKILLed: replica %s took over in %.2f s"
              % (dst.addr, new.addr, time.monotonic() - t2))
        assert c.slot_owner(slot).addr == new.addr and new.role == "master"
        new.call("SET", key, "after")
        t3 = time.monotonic()
        c.restart_node(dst)
        c.wait_consistent()
        print("old master restarted: a %s again in %.2f s" % (dst.role, time.monotonic() - t3))
        assert dst.role == "replica"
        print("cluster-selftest: ok")
        return 0
    finally:
        c.stop()
        if files:
            files.cleanup()

def _run_command(command: List[str], env: Dict[str, str]) -> int:
    """Runs command with env; Ctrl-C or SIGTERM to the harness terminates it (the caller then
    stops the servers); returns its status."""
    proc = subprocess.Popen(command, env=env)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        proc.terminate()

    signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cli_tls(args: argparse.Namespace) -> Optional[TlsFiles]:
    return TlsFiles(args.tls_dir) if args.tls_dir else None


def main(argv: List[str]) -> int:
    global REDIS_SERVER
    parser = argparse.ArgumentParser(prog="harness.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a command beside private redis-servers")
    run.add_argument("--appendonly", action="store_true")
    run.add_argument("--servers", type=int, default=1, metavar="N",
                     help="how many servers (with --cluster: clusters) to start "
                          "(default 1, at most %d)" % MAX_SERVERS)
    run.add_argument("--redis-server", metavar="PATH",
                     help="the redis-server binary (default: $REDPAT_REDIS_SERVER or PATH's)")
    run.add_argument("--tls", action="store_true",
                     help="TLS-only servers with certificates made by openssl "
                          "(rediss:// URLs, REDPAT_TEST_TLS_DIR)")
    run.add_argument("--tls-require-client-cert", action="store_true",
                     help="with --tls: servers refuse clients without a certificate "
                          "(--tls-auth-clients yes; implies --tls)")
    run.add_argument("--cluster", action="store_true",
                     help="each server is a Redis Cluster of 3 masters (REDPAT_TEST_CLUSTER=1)")
    run.add_argument("--replicas", type=int, default=0, metavar="R",
                     help="with --cluster: replicas per master (default 0)")
    run.add_argument("--node-timeout", type=int, metavar="MS",
                     help="with --cluster: --cluster-node-timeout (default %d ms with replicas, "
                          "%d without)" % (NODE_TIMEOUT_REPLICAS_MS, NODE_TIMEOUT_NO_REPLICAS_MS))
    run.add_argument("command", nargs=argparse.REMAINDER)

    def cluster_cmd(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--node-url", required=True,
                       help="any node of the cluster: host:port, redis://host:port or a "
                            "redis+cluster:// URL (its first seed)")
        p.add_argument("--tls-dir", help="REDPAT_TEST_TLS_DIR, for TLS nodes")
        return p

    mig = cluster_cmd("cluster-migrate", "move one hash slot (with its keys) to another master")
    mig.add_argument("--slot", type=int, help="the slot to move")
    mig.add_argument("--key", help="or: the slot of this key")
    mig.add_argument("--to", required=True, metavar="HOST:PORT", help="the master to move it to")
    mig.add_argument("--pause", type=float, default=0.0, metavar="S",
                     help="seconds between MIGRATING and the key moves (the ASK window)")
    mig.add_argument("--batch", type=int, default=100, help="keys per MIGRATE (default 100)")
    own = cluster_cmd("cluster-slot-owner", "print host:port of the master serving a slot")
    own.add_argument("--slot", type=int)
    own.add_argument("--key")
    fo = cluster_cmd("cluster-failover",
                     "SIGKILL a master and wait until a replica took over: prints the new "
                     "master's host:port and the seconds it took")
    fo.add_argument("--master", required=True, metavar="HOST:PORT")
    fo.add_argument("--timeout", type=float, default=30.0)
    st = sub.add_parser("cluster-selftest", help="start a 3+3 cluster, move a slot under load, "
                                                 "fail a master over (~15 s)")
    st.add_argument("--tls", action="store_true")
    args = parser.parse_args(argv)
    if args.cmd == "cluster-selftest":
        return cluster_selftest(args.tls)
    if args.cmd in ("cluster-migrate", "cluster-slot-owner"):
        if (args.slot is None) == (args.key is None):
            parser.error("%s: give one of --slot and --key" % args.cmd)
        slot = args.slot if args.slot is not None else key_slot(args.key)
        c = attach_cluster(args.node_url, _cli_tls(args))
        if args.cmd == "cluster-slot-owner":
            print(c.slot_owner(slot).addr)
            return 0
        moved = c.migrate_slot(slot, args.to, pause=args.pause, batch=args.batch)
        print("slot %d -> %s: %d keys moved" % (slot, args.to, moved))
        return 0
    if args.cmd == "cluster-failover":
        c = attach_cluster(args.node_url, _cli_tls(args))
        t0 = time.monotonic()
        c.kill_master(args.master)
        new = c.wait_failover(args.master, args.timeout)
        print("%s %.2f" % (new.addr, time.monotonic() - t0))
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command after --")
    if not 1 <= args.servers <= MAX_SERVERS:
        parser.error("--servers: 1..%d" % MAX_SERVERS)
    if not args.cluster and (args.replicas or args.node_timeout):
        parser.error("--replicas and --node-timeout go with --cluster")
    if args.replicas < 0:
        parser.error("--replicas: >= 0")
    if args.cluster and args.tls_require_client_cert:
        # redis-cli --cluster and the nodes' bus links would need the client certificate
        # everywhere; nothing needs it yet
        parser.error("--cluster with --tls-require-client-cert is not supported (use --tls)")
    if args.redis_server:
        REDIS_SERVER = os.environ["REDPAT_REDIS_SERVER"] = args.redis_server
    tls = make_tls_files() if args.tls or args.tls_require_client_cert else None
    auth_clients = "yes" if args.tls_require_client_cert else "optional"
    try:
        if args.cluster:
            clusters = start_clusters(args.servers, replicas=args.replicas, tls=tls,
                                      appendonly=args.appendonly,
                                      node_timeout_ms=args.node_timeout)
            try:
                return _run_command(command, dict(os.environ, **cluster_env(clusters)))
            finally:
                stop_clusters(clusters)
        with RedisServers(args.servers, appendonly=args.appendonly, tls=tls,
                          tls_auth_clients=auth_clients) as servers:
            return _run_command(command, dict(os.environ, **server_env(servers)))
    finally:
        if tls:
            tls.cleanup()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
