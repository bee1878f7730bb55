"""The asyncio executor, under redpat.asyncio.Client.

The pattern classes in redpat/_async are written against it (and turned into the sync ones
at build time, which import _blocking.py instead). It drives the core's sans-IO ops itself
(step, request bytes, feed reply bytes, sleep, CALL, EMIT) over its own asyncio stream
connections: no thread pool, nothing blocks the event loop. The driver contract
(redpat/op.h), as asyncio does it:

- Targets: an op names where each node's requests go (_core.target); connections are pooled
  by that address, opened and handshaken (AUTH / SELECT) on first need. On a cluster
  (redis+cluster://) a node's target is the master of its keys' slot, a seed for a topology
  read or a MOVED / ASK destination, so it is asked afresh every round, never kept; the
  handshake is the target's (AUTH only). max_connections
  bounds the connections open to each address (pooled, in use, and a subscription's, whose
  place is held from its first connection to its close, across reconnects): a round
  that finds none free waits for one (up to the command timeout: then that target fails
  with "too many connections"), taking its targets' connections in node order, so that two
  rounds never wait on each other. Connections are held only during IO rounds: an op's
  SLEEP (a lock acquire between attempts) holds none. The pool belongs to one event loop:
  under another (a second asyncio.run) the first loop's connections are dropped, and new
  ones opened. A rediss:// target's connection does its TLS handshake first (one
  ssl.SSLContext per Executor, from the tls_* options: _ssl_context), within the same
  deadline as the AUTH handshake.
- Parallel rounds: connections first (new ones opened concurrently), then every target's
  request is written, then all are read concurrently (one task per target; a single-target
  round, the usual case, runs inline), each within the round's per-target timeout
  (_core.timeout_ms, or the command timeout). A failed target is handed to the op
  (fail_node): quorum ops tolerate it. A round ends early once the op has enough
  (round_over: a Redlock majority). A target still pending then whose replies have not
  begun to come is *parked*: its connection goes back to the pool owing them
  (_core.replies_owed), and its next use reads and drops them before any byte reaches the
  op (as the blocking transport does: no reconnect per quorum round, and one server's
  requests stay in order on one connection). Any other connection with a request
  unanswered (a timeout, a cancelled task, a half-read or broken reply) is closed, never
  pooled.
- CALL: the user's coroutine runs as a task while the op goes on stepping (a lock.using
  renews meanwhile); a SLEEP then waits for the sleep or the task, whichever ends first; the
  op is resumed with what the task returned or raised. The callback's own exception is
  re-raised as it was once the op has cleaned up.
- Cancellation: a task cancelled while it drives an op cancels the op (and the callback's
  task), drives the op's clean-up (a lock.using releases its lock) shielded from further
  cancellation, then re-raises CancelledError.
- Long-lived ops (a subscription's listen): a Listener keeps connections of their own and
  hands out one message at a time.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import os
import socket
import ssl
import sys
from typing import (Any, Awaitable, Callable, Coroutine, Deque, Dict, List, Optional, Set,
                    Tuple, TypeVar)

from . import _core
from ._common import NO_TLS, BytesLike, Seconds, TlsConfig, check_max_connections, seconds
from .errors import RedpatError, StateError, error_for

#: The functions the asyncio decorators take.
Func = Callable[..., Awaitable[Any]]
T = TypeVar("T")
#: What Lock.using runs: a coroutine function, whose coroutine returns T.
Fn = Callable[..., Awaitable[T]]

_READ_SIZE = 65536
# Ops performed by name (a str, not one of the stub's literals): untyped on purpose.
_begin: Callable[..., _core.Op] = _core.begin
_call: Callable[..., Any] = _core.call
_FIRST = asyncio.FIRST_COMPLETED

if sys.version_info >= (3, 11):
    async def _within(awaitable: Awaitable[T], timeout: float) -> T:
        async with asyncio.timeout(timeout):
            return await awaitable
else:  # pragma: no cover - exercised on older Pythons only
    async def _within(awaitable: Awaitable[T], timeout: float) -> T:
        return await asyncio.wait_for(awaitable, timeout)


# Node failures are worded as the blocking transport words them (core/src/transport_hiredis.c),
# "<address>: timed out after 500 ms waiting for the reply", so a message is the same in
# every frontend.
_WAITING = "waiting for the reply"
_IN_HANDSHAKE = "in the handshake (AUTH / SELECT)"
_IN_TLS = "in the TLS handshake"


def _ms(seconds: float) -> str:
    return "%d ms" % round(seconds * 1000)


def _why(exc: BaseException) -> str:
    """An OSError as strerror says it ("Connection refused"), a TLS error as OpenSSL's
    reason ("tlsv13 alert certificate required"), else its text or type."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _tls_why(exc: BaseException) -> str:
    """A failed TLS handshake worded as the blocking transport words it (core/src/tls.c):
    "certificate verify failed (<why>)", OpenSSL's reason ("wrong version number"), not
    Python's "[SSL: X] ... (_ssl.c:N)" decoration."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "certificate verify failed (%s)" % (exc.verify_message or exc.reason)
    if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError, asyncio.IncompleteReadError)):
        return "connection closed by the server (does it speak TLS on this port?)"
    return _why(exc)


async def _tcp_socket(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to host:port (the addresses getaddrinfo gives,
    in turn, as asyncio.open_connection tries them), for a TLS handshake timed apart from
    the connect."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: Optional[OSError] = None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, addr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error or OSError("%s: no address to connect to" % host)


def _ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The ssl.SSLContext of a client's tls_* options (checked by the core at client.new);
    a file that does not load is named as the option."""
    ca_file, cert_file, key_file, _, verify = tls
    try:
        what, path = "tls_ca_file", ca_file
        # a CA file replaces the system's store (load_default_certs only without one)
        ctx = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            what, path = "tls_cert_file", cert_file
            ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise error_for(_core.EINVAL, "%s: cannot load \"%s\": %s"
                        % (what, path, _tls_why(exc))) from None
    if not verify:  # explicit only: no chain, no name check
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _resp_end(buf: bytes, pos: int) -> Optional[int]:
    """Where the RESP value starting at buf[pos] ends (the index after it); None while it is
    incomplete. Raises ValueError for bytes that are not RESP. For parked connections only:
    the core parses everything else."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    kind = buf[pos:pos + 1]
    if kind in b"+-:_,#(":  # one-line values (RESP2 and RESP3)
        return eol + 2
    n = int(buf[pos + 1:eol])
    if kind in b"$=!":  # bulk strings, verbatim strings, bulk errors
        whole = eol + 2 + n + 2
        return eol + 2 if n < 0 else whole if len(buf) >= whole else None
    if kind in b"*~>%|":  # arrays, sets, pushes; maps and attributes hold n pairs
        at: Optional[int] = eol + 2
        for _ in range(max(n * 2 if kind in b"%|" else n, 0)):
            at = _resp_end(buf, at) if at is not None else None
            if at is None:
                return None
        if kind == b"|" and at is not None:  # an attribute comes before what it qualifies
            return _resp_end(buf, at)
        return at
    raise ValueError("not RESP: %r" % kind)


class _Connection:
    """One stream connection to address. clean is False while requests are unanswered;
    owed: replies of an abandoned request still to come (parked), dropped before any byte
    goes to an op. deadline: the loop time by which the current exchange must end (one
    deadline for a new connection's handshake and its first request together)."""

    __slots__ = ("reader", "writer", "address", "clean", "owed", "deadline", "_skipped",
                 "pool")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 address: str) -> None:
        self.reader = reader
        self.writer = writer
        self.address = address
        self.clean = True
        self.owed = 0
        self.deadline = 0.0
        self._skipped = b""
        # (executor, generation) whose max_connections count it is in; None: not counted
        self.pool: "Optional[Tuple[Executor, int]]" = None

    def skip(self, data: bytes) -> bytes:
        """data with the replies still owed dropped from its front (b"": all of it was
        theirs). OSError if they are not RESP: the connection must be closed."""
        buf, pos = self._skipped + data, 0
        try:
            while self.owed:
                end = _resp_end(buf, pos)
                if end is None:
                    self._skipped = buf[pos:]
                    return b""
                pos, self.owed = end, self.owed - 1
        except ValueError as exc:
            raise ConnectionError("bad reply to an abandoned request: %s" % exc) from None
        self._skipped = b""
        return buf[pos:]

    def usable(self) -> bool:
        return self.clean and not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.clean = False
        self.writer.close()
        pool, self.pool = self.pool, None
        if pool is not None:
            pool[0]._closed(self.address, pool[1])

    def drop(self) -> None:
        """Closes a connection of an event loop that is gone (closed: its transport cannot
        close itself any more): the socket is shut down and closed here."""
        self.clean = False
        self.pool = None
        transport = self.writer.transport
        try:
            transport.abort()
            return
        except RuntimeError:  # "Event loop is closed"
            pass
        sock = transport.get_extra_info("socket")
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)  # the server lets go of it at once
        except OSError:
            pass
        # What the transport's own close would do (a selector transport's socket; under
        # TLS, the one of the transport beneath): else it is closed when collected.
        beneath = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
        for owner in (transport, beneath):
            raw = getattr(owner, "_sock", None)
            if isinstance(raw, socket.socket):
                raw.close()
                setattr(owner, "_sock", None)


async def _replies(conn: _Connection, op: _core.Op, node: int,
                   fed: Optional[Set[int]] = None) -> None:
    """Feeds node's reply bytes (its request written on conn) back until all are in, or
    the op failed the node (a protocol error: conn stays unclean, out of step); the replies
    a parked conn still owes are dropped first. fed: node is added once bytes went to the
    op."""
    await conn.writer.drain()
    while True:
        data = await conn.reader.read(_READ_SIZE)
        if not data:
            raise ConnectionResetError("closed by peer")
        if conn.owed:
            data = conn.skip(data)
            if not data:
                continue
        if fed is not None:
            fed.add(node)
        rc = _core.feed(op, node, data)
        if rc != _core.MORE:
            conn.clean = rc == _core.OK
            return


async def _exchange(conn: _Connection, op: _core.Op, node: int, request: bytes) -> None:
    """Writes node's request on conn, then feeds its replies back (see _replies)."""
    conn.clean = False
    conn.writer.write(request)
    await _replies(conn, op, node)


class Executor:
    """A client's connections, pooled by address. template (made with the url: ops find
    their targets through its endpoints) makes handles and ops; each new connection runs its
    target's handshake first."""

    _ssl: Optional[ssl.SSLContext] = None  # made from _tls on the first TLS connection

    def __init__(self, url: str, namespace: BytesLike, connect_timeout: Seconds,
                 command_timeout: Seconds, tcp_keepalive: bool, max_idle: int,
                 max_reply_size: int, *, tls: TlsConfig = NO_TLS,
                 max_connections: Optional[int] = None) -> None:
        self.template = _core.make("client.new", url, namespace, connect_timeout,
                                   command_timeout, tcp_keepalive,
                                   max_reply_size, *tls)  # checks every option
        self._tls = tls  # (ca_file, cert_file, key_file, server_name, verify)
        self._connect_timeout = seconds(connect_timeout)
        self._command_timeout = seconds(command_timeout)
        self._keepalive = tcp_keepalive
        self._max_idle = max_idle
        self._idle: Dict[str, List[_Connection]] = {}
        self._pid = os.getpid()
        self._max = check_max_connections(max_connections)
        # Under max_connections: connections open per address, and the futures of the
        # rounds waiting for one (woken one at a time as one comes back or closes). They
        # belong to _loop; _gen tells the connections counted under an earlier loop.
        self._open_at: Dict[str, int] = {}
        self._waiting: "Dict[str, Deque[asyncio.Future[None]]]" = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._gen = 0

    # -- connections ---------------------------------------------------------------------

    async def _open(self, op: _core.Op, node: int, timeout: Optional[float] = None) -> _Connection:
        """A new connection to node's target, handshaken; timeout bounds the connect (the
        connect timeout when None) and, from the moment the socket connected, the handshake
        and the round's request together (the command timeout when None): conn.deadline;
        a TLS handshake (rediss://) is part of that exchange, as in the blocking transport.
        Raises the RedpatError to report."""
        address, unix, host, port, path, tls = _core.target(op, node)
        limit = self._connect_timeout if timeout is None else min(timeout, self._connect_timeout)
        tcp: Optional[socket.socket] = None
        ctx: Optional[ssl.SSLContext] = None
        try:
            if unix:
                reader, writer = await _within(asyncio.open_unix_connection(path), limit)
            elif tls:
                # made once per Executor, before any socket is opened
                ctx = self._ssl = self._ssl or _ssl_context(self._tls)
                tcp = await _within(_tcp_socket(host or "", port), limit)
            else:
                reader, writer = await _within(asyncio.open_connection(host, port), limit)
        except asyncio.TimeoutError:
            raise error_for(_core.ETIMEOUT, "%s: timed out after %s connecting"
                            % (address, _ms(limit))) from None
        except OSError as exc:
            raise error_for(_core.ETRANSPORT, "%s: cannot connect: %s"
                            % (address, _why(exc))) from None
        exchange = self._command_timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + exchange
        if tcp is not None and ctx is not None:
            reader, writer = await self._start_tls(tcp, ctx, host or "", address, exchange)
        sock = writer.get_extra_info("socket")
        if sock is not None and self._keepalive and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn = _Connection(reader, writer, address)
        conn.deadline = deadline
        try:
            await self._handshake(_core.handshake(op, node, self.template), conn, exchange)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _start_tls(self, tcp: socket.socket, ctx: ssl.SSLContext, host: str, address: str,
                         exchange: float) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The TLS handshake over the connected tcp socket (owned: closed on failure), within
        exchange seconds, with the client's context ctx; the certificate is checked against
        tls_server_name, else the URL's host (an IP address as one)."""
        # asyncio's own handshake timeout only as a backstop: _within ends it first
        opening = asyncio.open_connection(sock=tcp, ssl=ctx,
                                          server_hostname=self._tls[3] or host,
                                          ssl_handshake_timeout=exchange + 1.0)
        try:
            return await _within(opening, exchange)
        except asyncio.TimeoutError:
            tcp.close()  # (asyncio closes it too once a transport was made: a no-op then)
            raise error_for(_core.ETIMEOUT, "%s: timed out after %s %s"
                            % (address, _ms(exchange), _IN_TLS)) from None
        except OSError as exc:  # ssl.SSLError is one
            tcp.close()
            raise error_for(_core.ETRANSPORT, "%s: TLS handshake failed: %s"
                            % (address, _tls_why(exc))) from None
        except BaseException:
            tcp.close()
            raise

    async def _handshake(self, hs: _core.Op, conn: _Connection, exchange: float) -> None:
        """Runs hs on conn within what is left of conn.deadline (exchange: its length)."""
        loop = asyncio.get_running_loop()
        while True:
            step, what = _core.step(hs)
            if step != _core.STEP_IO:
                return  # DONE (a refusal raises from step)
            try:
                await _within(_exchange(conn, hs, 0, what[0]),
                              max(conn.deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                _core.fail_node(hs, 0, _core.ETIMEOUT, "%s: timed out after %s %s"
                                % (conn.address, _ms(exchange), _IN_HANDSHAKE))
            except OSError as exc:
                _core.fail_node(hs, 0, _core.ETRANSPORT, "%s: connection lost %s: %s"
                                % (conn.address, _IN_HANDSHAKE, _why(exc)))

    def _here(self) -> None:
        """Makes the pool the running loop's: a forked child's, or another loop's (a second
        asyncio.run) starts afresh."""
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid():
            # A forked child must not talk over its parent's sockets (nor close them).
            self._idle = {}
            self._pid = os.getpid()
            self._loop = None
        if loop is not self._loop:
            if self._loop is not None:  # its connections cannot serve this loop
                idle, self._idle = self._idle, {}
                for conns in idle.values():
                    for conn in conns:
                        conn.drop()
            self._loop = loop
            self._gen += 1
            self._open_at = {}
            self._waiting = {}

    def _pooled(self, op: _core.Op, node: int) -> Optional[_Connection]:
        """An idle connection to node's target, or None."""
        self._here()
        idle = self._idle.get(_core.target(op, node)[0])
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _checkin(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.address, [])
        if conn.usable() and len(idle) < self._max_idle:
            idle.append(conn)
            if self._max is not None:
                self._wake(conn.address)
        else:
            conn.close()

    # -- max_connections -----------------------------------------------------------------

    def _closed(self, address: str, gen: int) -> None:
        """A counted connection to address closed: its place is free."""
        if gen == self._gen:
            self._open_at[address] -= 1
            self._wake(address)

    def _wake(self, address: str) -> None:
        """Wakes the first round still waiting for a connection to address."""
        waiting = self._waiting.get(address)
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def _lease(self, address: str, take_idle: bool) -> Optional[_Connection]:
        """Under max_connections: an idle connection to address (take_idle), or None once a
        place for a new one is counted (an idle one is closed to make room if need be);
        waits up to the command timeout for either, then raises ConnectionError."""
        assert self._max is not None
        loop = asyncio.get_running_loop()
        end = None
        while True:
            idle = self._idle.get(address)
            while take_idle and idle:
                conn = idle.pop()
                if conn.usable():
                    return conn
                conn.close()  # (its place frees at once)
            if self._open_at.get(address, 0) < self._max:
                self._open_at[address] = self._open_at.get(address, 0) + 1
                return None
            if idle:
                idle.pop().close()  # makes room
                continue
            now = loop.time()
            end = now + self._command_timeout if end is None else end
            if now >= end:
                raise error_for(_core.ETRANSPORT, "too many connections: all %d of the "
                                "client's connections to %s (max_connections=%d) stayed in "
                                "use for %s (command_timeout)" % (
                                    self._max, address, self._max,
                                    _ms(self._command_timeout)))
            fut = loop.create_future()
            self._waiting.setdefault(address, collections.deque()).append(fut)
            try:
                await asyncio.wait((fut,), timeout=end - now)
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._wake(address)  # woken, but cancelled: the next one's turn
                fut.cancel()
                raise
            fut.cancel()  # (timed out: a no-op once woken)

    async def _hold(self, op: _core.Op, node: int, held: Dict[int, Tuple[str, int]]) -> None:
        """A long-lived op's node gets a place under max_connections for its first
        connection (waiting for one: see _lease), kept across its reconnects until it is
        closed, as the sync Listener's connected client is: held, node -> (address,
        generation). Its connections themselves are not counted."""
        self._here()
        if self._max is not None and (node not in held or held[node][1] != self._gen):
            address = _core.target(op, node)[0]
            await self._lease(address, False)
            held[node] = (address, self._gen)

    async def _new(self, op: _core.Op, node: int, timeout: Optional[float],
                   slots: Dict[int, str]) -> _Connection:
        """A new connection for node (see _open), counted under max_connections: its place
        was counted already if node is in slots (node -> the address it was counted for;
        taken out of it here, at once), else it waits for one."""
        if self._max is None:
            return await self._open(op, node, timeout)
        address, gen = _core.target(op, node)[0], self._gen
        if node in slots:
            address = slots.pop(node)
        else:
            await self._lease(address, False)
        try:
            conn = await self._open(op, node, timeout)
        except BaseException:
            self._closed(address, gen)
            raise
        conn.pool = (self, gen)
        return conn

    # -- rounds --------------------------------------------------------------------------

    async def _connect(self, op: _core.Op, node: int, timeout: float,
                       into: Dict[int, _Connection], slots: Dict[int, str]) -> None:
        """A new connection for node, into into[node] (slots: see _new); a failure goes to
        the op."""
        try:
            into[node] = await self._new(op, node, timeout, slots)
        except RedpatError as exc:
            # connect or handshake: nothing of the round's request was written
            _core.fail_node_unsent(op, node, exc.code if exc.code is not None
                                   else _core.ETRANSPORT, str(exc))

    async def _receive(self, conn: _Connection, op: _core.Op, node: int, timeout: float,
                       fed: Optional[Set[int]] = None,
                       parked: Optional[Dict[int, int]] = None) -> None:
        """Feeds node's replies (its request written on conn) to the op as they come, by
        conn.deadline (timeout: the exchange's length, for the message); a failure goes to
        the op. conn goes back to the pool if it is in step, or parked (node in parked, when
        the round ended early: it owes that many replies)."""
        try:
            left = conn.deadline - asyncio.get_running_loop().time()
            await _within(_replies(conn, op, node, fed), max(left, 0.0))
        except asyncio.TimeoutError:
            _core.fail_node(op, node, _core.ETIMEOUT, "%s: timed out after %s %s"
                            % (conn.address, _ms(timeout), _WAITING))
        except OSError as exc:
            _core.fail_node(op, node, _core.ETRANSPORT, "%s: connection lost %s: %s"
                            % (conn.address, _WAITING, _why(exc)))
        finally:
            if parked is not None and node in parked:
                conn.owed += parked[node]
                conn.clean = True
            if conn.clean:
                self._checkin(conn)
            else:
                conn.close()

    async def _round(self, op: _core.Op, requests: Tuple[bytes, ...]) -> None:
        """One parallel IO round over the op's targets (see the module's doc): connections
        first (new ones opened concurrently), then every request written, then every reply
        read concurrently."""
        timeout = _core.timeout_ms(op) / 1000.0 or self._command_timeout
        conns: Dict[int, _Connection] = {}
        tasks: "List[asyncio.Future[None]]" = []
        # nodes whose new connection's place is counted already, with the address it was
        # counted for (a cluster op's target may change once the op learns of a failure)
        slots: Dict[int, str] = {}
        gen = self._gen
        try:
            fresh = []
            for node, request in enumerate(requests):
                # (a NOSCRIPT retry round still shows the other targets' last requests:
                # only the pending ones are the round's)
                if request and _core.pending(op, node):
                    conn = self._pooled(op, node)
                    gen = self._gen
                    if conn is None and self._max is not None:
                        # in node order: a round waits holding only lower nodes' ones
                        address = _core.target(op, node)[0]
                        try:
                            conn = await self._lease(address, True)
                        except RedpatError as exc:
                            _core.fail_node_unsent(op, node, _core.ETRANSPORT, str(exc))
                            continue
                        if conn is None:
                            slots[node] = address
                    if conn is None:
                        fresh.append(node)
                    else:
                        conns[node] = conn
            started = asyncio.get_running_loop().time()
            for conn in conns.values():
                conn.deadline = started + timeout  # a pooled one: from the start
            if len(fresh) == 1:
                await self._connect(op, fresh[0], timeout, conns, slots)
            elif fresh:
                await asyncio.gather(*(self._connect(op, node, timeout, conns, slots)
                                       for node in fresh))
            for node, conn in conns.items():
                conn.clean = False
                conn.writer.write(requests[node])
            if len(conns) == 1:  # the usual case: no task needed
                node, conn = conns.popitem()
                await self._receive(conn, op, node, timeout)
                return
            fed: Set[int] = set()
            parked: Dict[int, int] = {}
            nodes: "Dict[asyncio.Future[None], int]" = {}
            while conns:
                node, conn = conns.popitem()
                receiving: "asyncio.Future[None]" = asyncio.ensure_future(
                    self._receive(conn, op, node, timeout, fed, parked))
                tasks.append(receiving)
                nodes[receiving] = node
            try:
                pending: Set["asyncio.Future[None]"] = set(tasks)
                while pending and not _core.round_over(op):
                    _, pending = await asyncio.wait(pending, return_when=_FIRST)
                # Enough answers (a quorum): the targets still pending are abandoned; those
                # whose replies have not begun to come are parked, owing them.
                for abandoned in pending:
                    if nodes[abandoned] not in fed:
                        parked[nodes[abandoned]] = _core.replies_owed(op, nodes[abandoned])
            finally:
                # ... or our own cancellation: their tasks park or close their connections
                left = [t for t in tasks if not t.done()]
                for abandoned in left:
                    abandoned.cancel()
                if left:
                    await asyncio.wait(left)
            for done in tasks:
                if not done.cancelled() and done.exception() is not None:
                    raise done.exception()  # type: ignore[misc]  # a bug, not an I/O failure
        except BaseException:
            # Cancelled mid-round: no request may stay in flight for the op's clean-up.
            for conn in conns.values():
                conn.close()
            for node in range(len(requests)):
                if _core.pending(op, node):
                    _core.fail_node(op, node, _core.ECANCELED, "cancelled")
            raise
        finally:
            for address in slots.values():  # counted, but never opened (cancelled first)
                self._closed(address, gen)

    # -- driving -------------------------------------------------------------------------

    async def _drive(self, op: _core.Op) -> Any:
        """Drives op to the end and returns its result (a failed op raises; a callback's
        failure is re-raised as the callback raised it)."""
        call: "Optional[asyncio.Future[Any]]" = None
        raised: Optional[BaseException] = None
        try:
            while True:
                if call is not None and call.done():
                    raised = _resume(op, call)
                    call = None
                step, what = _core.step(op)
                if step == _core.STEP_IO:
                    await self._round(op, what)
                elif step == _core.STEP_SLEEP:
                    if call is None:
                        await asyncio.sleep(what)
                    else:  # until the sleep ends or the callback returns (what None: the latter)
                        await asyncio.wait((call,), timeout=what)
                elif step == _core.STEP_CALL:
                    call = asyncio.ensure_future(what[1](*what[2]))
                elif step == _core.STEP_DONE:
                    return what
                else:
                    raise StateError("%r EMITs messages: it is long-lived (use a Listener)"
                                     % (op,), _core.ESTATE)
        except RedpatError as exc:
            if raised is None or exc.code not in (_core.ECALLBACK, _core.ECANCELED):
                raise
        except asyncio.CancelledError:
            await _shielded(self._abandon(op, call))
            raise
        raise raised  # outside the except clause: the callback's exception as it was

    async def _abandon(self, op: _core.Op, call: "Optional[asyncio.Future[Any]]") -> None:
        """The op's task was cancelled: cancel the callback's task (and let it end), cancel
        the op, drive its clean-up."""
        if call is not None and not call.done():
            call.cancel()
            await asyncio.wait((call,))
        _core.cancel(op)
        try:
            await self._drive(op)
        except (RedpatError, asyncio.CancelledError):
            pass  # it ends cancelled: what the caller sees is its own CancelledError

    async def call(self, op: str, *args: Any) -> Any:
        """Performs op (an op name of the descriptor table) with args."""
        return await self._drive(_begin(op, *args))

    def peek(self, mutex: "Mutex", op: str, *args: Any) -> Any:
        """Performs an op answered from its handle (no I/O; one thread: no mutex needed)."""
        return _call(None, op, *args)

    def listener(self, op: str, *args: Any) -> "Listener":
        """Begins the long-lived op (a subscription's listen) on connections of its own."""
        return Listener(self, _begin(op, *args))

    async def close(self) -> None:
        self._here()  # (another loop's connections are dropped there)
        idle, self._idle = self._idle, {}
        conns = [conn for pool in idle.values() for conn in pool]
        for conn in conns:
            conn.close()
        for conn in conns:
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass


def _resume(op: _core.Op, call: "asyncio.Future[Any]") -> Optional[BaseException]:
    """Hands the op what its callback's task returned or raised; returns the latter."""
    exc: Optional[BaseException]
    if call.cancelled():
        exc = asyncio.CancelledError()
    else:
        exc = call.exception()
    if exc is None:
        _core.resume(op, call.result())
    else:
        _core.resume(op, exc, True)
    return exc


async def _shielded(work: Coroutine[Any, Any, None]) -> None:
    """Runs work to its end even if the awaiting task is cancelled again meanwhile."""
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
        except Exception:
            break
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


class Listener:
    """A long-lived op (a subscription's listen) on connections of its own (one per
    target). next() hands out its messages one at a time; change() changes what it wants
    and gets the change sent at once, waking a task waiting in next() to send it (the
    messages a change found on its way wait in order for next())."""

    def __init__(self, x: Executor, op: _core.Op) -> None:
        self._x = x
        self._op: Optional[_core.Op] = op
        self._conns: Dict[int, _Connection] = {}
        self._reads: Dict[int, "asyncio.Future[bytes]"] = {}  # survive a wait that ran out
        self._wake_at: Optional[float] = None  # a SLEEP (reconnect backoff) in progress
        self._reading: Optional[asyncio.Lock] = None
        # change() while a task waits in next(): it steps again, to send the change
        self._kicked = False
        self._kick: "Optional[asyncio.Future[None]]" = None
        self._queue: Deque[Any] = collections.deque()
        # under max_connections, the places its nodes hold: node -> (address, generation)
        self._held: Dict[int, Tuple[str, int]] = {}

    def _lock(self) -> asyncio.Lock:
        if self._reading is None:
            self._reading = asyncio.Lock()
        return self._reading

    def _live(self) -> _core.Op:
        if self._op is None:
            raise StateError("the subscription is closed", _core.ESTATE)
        return self._op

    async def next(self, timeout: Optional[float]) -> Any:
        """The op's next message, waiting up to timeout seconds (None: for ever); None when
        none came in time (the op lives on: nothing is lost)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(timeout, 0.0)
        async with self._lock():
            if self._queue:
                return self._queue.popleft()
            return await self._step(deadline)

    async def _step(self, deadline: Optional[float]) -> Any:
        """Steps the op until it EMITs (its message) or deadline (loop time; None: none)
        passes (None)."""
        loop = asyncio.get_running_loop()
        while True:
            op = self._live()
            if self._wake_at is not None:
                left = self._wake_at - loop.time()
                if deadline is not None and deadline < self._wake_at:
                    await asyncio.sleep(max(deadline - loop.time(), 0.0))
                    return None
                if left > 0:
                    await asyncio.sleep(left)
                self._wake_at = None
            step, what = _core.step(op)
            if step == _core.STEP_EMIT:
                return what
            if step == _core.STEP_SLEEP:
                self._wake_at = loop.time() + (what or 0.0)
            elif step == _core.STEP_IO:
                if not await self._listen_round(op, what, deadline):
                    return None
            elif step == _core.STEP_DONE:
                raise StateError("the long-lived op ended", _core.ESTATE)
            else:
                raise StateError("a long-lived op asked to CALL", _core.ESTATE)

    async def change(self, op: str, *args: Any) -> None:
        """Performs op (no I/O: it changes what the long-lived op wants) and gets the change
        sent now: by the task waiting in next() if there is one (woken for it), else here."""
        self._live()
        _call(None, op, *args)
        await self.flush()

    async def flush(self) -> None:
        """Steps the op without waiting for messages (it connects, sends what it has to)."""
        if self._lock().locked():
            self._kicked = True
            if self._kick is not None and not self._kick.done():
                self._kick.set_result(None)
            return
        async with self._lock():
            while True:  # what arrived meanwhile waits for next(), in order
                message = await self._step(asyncio.get_running_loop().time())
                if message is None:
                    return
                self._queue.append(message)

    async def _listen_round(self, op: _core.Op, requests: Tuple[bytes, ...],
                            deadline: Optional[float]) -> bool:
        """One round of the long-lived op: the requests written (connecting first where
        needed), then its targets read: listening ones until a message or the deadline,
        others until their replies or the per-target timeout. False: the deadline passed
        with nothing (the round stays open: the next step polls it again)."""
        loop = asyncio.get_running_loop()
        timeout = _core.timeout_ms(op) / 1000.0 or self._x._command_timeout
        active: List[int] = []
        for node, request in enumerate(requests):
            if not _core.pending(op, node):
                continue
            conn = self._conns.get(node)
            if conn is None:
                try:
                    await self._x._hold(op, node, self._held)
                except RedpatError as exc:  # none free for its first connection: as sync
                    _core.fail_node_unsent(op, node, _core.ETRANSPORT, str(exc))
                    raise
            try:
                # A connection of the op's is its own: if it dropped, the read below says so
                # to the op (which then reconnects, re-subscribing); only a target with none
                # gets a new one.
                if conn is None:
                    conn = self._conns[node] = await self._x._open(op, node)
                if request:
                    conn.writer.write(request)
                    await _within(conn.writer.drain(), timeout)
            except RedpatError as exc:  # from _open: nothing was written
                self._drop(node)
                _core.fail_node_unsent(op, node, exc.code if exc.code is not None
                                       else _core.ETRANSPORT, str(exc))
                continue
            except (OSError, asyncio.TimeoutError) as exc:
                self._drop(node)
                _core.fail_node(op, node, _core.ETRANSPORT, "%s: connection lost writing the "
                                "request: %s" % (_core.target(op, node)[0], _why(exc)))
                continue
            active.append(node)
        started = loop.time()
        while not _core.round_over(op):
            waiting = [n for n in active if _core.pending(op, n)]
            if not waiting:
                return True
            replying = [n for n in waiting if not _core.listening(op, n)]
            if replying:  # a request-reply round: the per-target timeout
                limit: Optional[float] = started + timeout - loop.time()
            else:
                limit = None if deadline is None else deadline - loop.time()
            if self._kicked:
                self._kicked = False
                return True  # step again: the op sends what it was asked to meanwhile
            reads = {self._read(n): n for n in waiting}
            self._kick = kick = loop.create_future()
            try:
                done, _ = await asyncio.wait(list(reads) + [kick], return_when=_FIRST,
                                             timeout=None if limit is None else max(limit, 0.0))
            finally:
                self._kick = None
            self._live()  # closed meanwhile (by another task): its reads were cancelled
            if kick in done:
                self._kicked = False
                return True
            if not done:
                if replying:
                    for n in replying:
                        self._drop(n)
                        _core.fail_node(op, n, _core.ETIMEOUT, "%s: timed out after %s %s"
                                        % (_core.target(op, n)[0], _ms(timeout), _WAITING))
                    continue
                return False
            for fut in done:
                n = reads[fut]
                del self._reads[n]
                try:
                    data = fut.result()
                    if not data:
                        raise ConnectionResetError("closed by peer")
                except OSError as exc:
                    self._drop(n)
                    _core.fail_node(op, n, _core.ETRANSPORT, "%s: connection lost %s: %s"
                                    % (_core.target(op, n)[0], _WAITING, _why(exc)))
                    continue
                rc = _core.feed(op, n, data)
                if rc not in (_core.OK, _core.MORE):
                    self._drop(n)  # the op failed the node: the stream is out of step
        return True

    def _read(self, node: int) -> "asyncio.Future[bytes]":
        """The read in progress on node's connection (kept across waits: no byte is lost
        when one runs out)."""
        fut = self._reads.get(node)
        if fut is None:
            fut = self._reads[node] = asyncio.ensure_future(
                self._conns[node].reader.read(_READ_SIZE))
        return fut

    def _drop(self, node: int) -> None:
        fut = self._reads.pop(node, None)
        if fut is not None:
            fut.cancel()
        conn = self._conns.pop(node, None)
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Frees the op and closes its connections (their places under max_connections
        are free again)."""
        conns = list(self._conns.values())
        for node in list(self._conns):
            self._drop(node)
        self._op = None
        held, self._held = self._held, {}
        for address, gen in held.values():
            self._x._closed(address, gen)
        for conn in conns:
            try:
                await conn.writer.wait_closed()
            except OSError:
                pass


class Mutex:
    """The mutex of a Lock object: an asyncio.Lock, made on first use inside the loop."""

    def __init__(self) -> None:
        self._lock: Optional[asyncio.Lock] = None

    async def __aenter__(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        assert self._lock is not None
        self._lock.release()


class Worker:
    """A background job (the lock watchdog, a near-cache's subscriber): a task on the
    running loop running target(worker); stop() cancels it (unless it is the task stopping
    itself)."""

    def __init__(self, target: Callable[["Worker"], Coroutine[Any, Any, None]],
                 name: str) -> None:
        self._target = target
        self._name = name
        self._task: "Optional[asyncio.Task[None]]" = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._target(self), name=self._name)

    def stop(self) -> None:
        self._stopped = True
        if self._task is not None and self._task is not _current_task():
            self._task.cancel()

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def alive(self) -> bool:
        """Whether its task runs (False once it ended: stopped, or its event loop ended)."""
        return self._task is not None and not self._task.done()

    async def pause(self, seconds: float) -> bool:
        """Waits seconds; False if the worker was stopped meanwhile."""
        await asyncio.sleep(seconds)
        return not self._stopped


def _current_task() -> "Optional[asyncio.Task[Any]]":
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def settle(value: Any) -> Any:
    """A user callback's result, awaited when it is awaitable (on_lost may be a coroutine
    function)."""
    return await value if inspect.isawaitable(value) else value


def check_decorated(fn: Callable[..., Any]) -> None:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError("%s is not a coroutine function: limit it with a limiter of "
                        "redpat.Client" % getattr(fn, "__qualname__", fn))


def check_callback(fn: Callable[..., Any], what: str) -> None:
    """Refuses what the asyncio flavour cannot run: anything but a coroutine function (a
    plain function would block the event loop)."""
    if not callable(fn):
        raise TypeError("%s must be a coroutine function, not %s" % (what, type(fn).__name__))
    if not inspect.iscoroutinefunction(fn) and not inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)):
        raise TypeError("%s is not a coroutine function: run it with redpat.Client, or make it "
                        "`async def`" % getattr(fn, "__qualname__", fn))


AcquireFn = TypeVar("AcquireFn", bound=Callable[..., Awaitable[bool]])


def acquire_order(acquire: AcquireFn) -> AcquireFn:
    """Lock.acquire's positional order here: redis-py's asyncio Lock takes (blocking,
    blocking_timeout, token), as the one source (redpat/_async/lock.py) is written. The
    sync flavour's own decorator (_blocking.acquire_order) puts sleep first instead."""
    return acquire
