"""Hostile loopback "Redis" servers for the hardening tests (issue 10): each listens on a
free 127.0.0.1 port, reads RESP requests and answers them badly, in one of these ways:

    trickle            AUTH / SELECT / HELLO get +OK at once; any other request gets an
                       endless reply ("$100000000\\r\\n" then bytes), one byte every 50 ms
    trickle_handshake  the same from the very first command: a url with a password trickles
                       in the handshake
    slow_ok            every command gets "+OK\\r\\n", one byte every 150 ms (750 ms a reply):
                       a handshake and a request each within a 1 s timeout, not both
    silent             accepts and reads, never answers
    bomb_array         "*2147483647\\r\\n" (the 13-byte header that asked for 16 GiB)
    bomb_array_100m    "*100000000\\r\\n"
    bomb_nested        "*1000\\r\\n" six times (hiredis nests 7 at most), then arrays of
                       1000 ":1\\r\\n" without end (billions of items: never complete)
    bomb_bulk          "$2147483647\\r\\n" then bytes without end
    bomb_line          "+" then bytes without end (a status line that never ends)
    bomb_handshake     the first command (AUTH) already gets "*2147483647\\r\\n"
    queued             every command, AUTH included, gets "+QUEUED\\r\\n" (a reply of the
                       wrong shape: never a success)

Every bomb answers every command (a url with a password is bombed in its AUTH) except
bomb_*'s handshake commands, which get +OK (bomb_handshake is the exception). Streams go as
fast as the client reads and stop when it closes.

Use (stdlib only):

    python3 tests/harness/hostile_server.py run -- COMMAND ARGS...
        starts every server above in this process, exports REDPAT_HOSTILE_<NAME>=<port>
        (e.g. REDPAT_HOSTILE_TRICKLE_HANDSHAKE), runs COMMAND, exits with its status
    python3 tests/harness/hostile_server.py serve [--port-file FILE]
        starts them, prints "<name> <port>" lines then "ready" (and writes the same to
        FILE), serves until killed
    from hostile_server import HostileServers   (Python tests)
        with HostileServers() as hs: hs.port("trickle") ... (a `serve` subprocess, so its
        memory is not the test's)
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

# name -> (what it does, header, stream filler, answers the handshake normally)
TRICKLE_INTERVAL = 0.05
SLOW_OK_INTERVAL = 0.15
HANDSHAKE_COMMANDS = {b"AUTH", b"SELECT", b"HELLO"}
SERVERS: Dict[str, Tuple[str, bytes, bytes, bool]] = {
    "trickle": ("trickle", b"$100000000\r\n", b"a", True),
    "trickle_handshake": ("trickle", b"$100000000\r\n", b"a", False),
    "slow_ok": ("slow", b"+OK\r\n", b"", False),
    "silent": ("silent", b"", b"", False),
    "bomb_array": ("bomb", b"*2147483647\r\n", b"", True),
    "bomb_array_100m": ("bomb", b"*100000000\r\n", b"", True),
    "bomb_nested": ("bomb", b"*1000\r\n" * 6, b"*1000\r\n" + b":1\r\n" * 1000, True),
    "bomb_bulk": ("bomb", b"$2147483647\r\n", b"a", True),
    "bomb_line": ("bomb", b"+", b"a", True),
    "bomb_handshake": ("bomb", b"*2147483647\r\n", b"", False),
    # a reply of the wrong shape to every command, AUTH included: never a success
    "queued": ("fixed", b"+QUEUED\r\n", b"", False),
}
STREAM_CHUNK = 65536


def parse_commands(buf: bytearray) -> List[bytes]:
    """Takes the complete commands off the front of buf; returns their names (upper case).
    RESP arrays of bulk strings, or inline commands."""
    names: List[bytes] = []
    while buf:
        if buf[:1] != b"*":
            end = buf.find(b"\n")
            if end < 0:
                break
            line = bytes(buf[:end]).split()
            del buf[:end + 1]
            if line:
                names.append(line[0].upper())
            continue
        pos, args = 0, []
        end = buf.find(b"\r\n")
        if end < 0:
            break
        count, pos = int(buf[1:end]), end + 2
        complete = True
        for _ in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0 or buf[pos:pos + 1] != b"$":
                complete = False
                break
            n = int(buf[pos + 1:end])
            if len(buf) < end + 2 + n + 2:
                complete = False
                break
            args.append(bytes(buf[end + 2:end + 2 + n]))
            pos = end + 2 + n + 2
        if not complete:
            break
        del buf[:pos]
        names.append(args[0].upper() if args else b"")
    return names


def trickle(conn: socket.socket, data: bytes, interval: float) -> None:
    for i in range(len(data)):
        conn.sendall(data[i:i + 1])
        time.sleep(interval)


def serve_conn(conn: socket.socket, name: str) -> None:
    kind, header, filler, plain_handshake = SERVERS[name]
    buf = bytearray()
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            if kind == "silent":
                continue
            buf += data
            for cmd in parse_commands(buf):
                if plain_handshake and cmd in HANDSHAKE_COMMANDS:
                    conn.sendall(b"+OK\r\n")
                elif kind == "fixed":
                    conn.sendall(header)
                elif kind == "slow":
                    trickle(conn, header, SLOW_OK_INTERVAL)
                elif kind == "trickle":
                    trickle(conn, header, TRICKLE_INTERVAL)
                    while True:  # endless: until the client goes away
                        trickle(conn, filler, TRICKLE_INTERVAL)
                else:  # bomb
                    conn.sendall(header)
                    if filler:
                        chunk = filler * (STREAM_CHUNK // len(filler))
                        while True:
                            conn.sendall(chunk)
    except OSError:
        return  # the client closed: that is how every hostile answer ends
    finally:
        conn.close()


def listen(name: str) -> Tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)

    def accept_loop() -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=serve_conn, args=(conn, name), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    return s, int(s.getsockname()[1])


def start_all() -> Dict[str, int]:
    return {name: listen(name)[1] for name in SERVERS}


def env_name(name: str) -> str:
    return "REDPAT_HOSTILE_" + name.upper()


class HostileServers:
    """Every hostile server, in a `serve` subprocess (its memory is not the caller's)."""

    def __init__(self) -> None:
        self.ports: Dict[str, int] = {}
        self._proc: "Optional[subprocess.Popen[bytes]]" = None

    def __enter__(self) -> "HostileServers":
        self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve"],
                                      stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip() == b"ready":
                break
            name, port = line.split()
            self.ports[name.decode()] = int(port)
        if len(self.ports) != len(SERVERS):
            raise RuntimeError("hostile_server.py serve did not start")
        return self

    def port(self, name: str) -> int:
        return self.ports[name]

    def url(self, name: str, password: Optional[str] = None) -> str:
        auth = ":%s@" % password if password else ""
        return "redis://%s127.0.0.1:%d/0" % (auth, self.ports[name])

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve", help="serve every hostile server until killed")
    sv.add_argument("--port-file", help="also write the '<name> <port>' lines here")
    rn = sub.add_parser("run", help="serve them while COMMAND runs (ports in the environment)")
    rn.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    ports = start_all()
    lines = "".join("%s %d\n" % kv for kv in ports.items())
    if args.cmd == "serve":
        if args.port_file:
            with open(args.port_file + ".tmp", "w") as f:
                f.write(lines + "ready\n")
            os.replace(args.port_file + ".tmp", args.port_file)
        sys.stdout.write(lines + "ready\n")
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("run: a COMMAND is needed after --")
    env = dict(os.environ)
    for name, port in ports.items():
        env[env_name(name)] = str(port)
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
