#!/usr/bin/env python3
"""Writes the seed corpus tests/fuzz/corpus/<family>/ (checked in; run again after changing
it: python3 tests/fuzz/seeds.py [--capture]). Each seed is the harness' 8-byte header
(fuzz_ops.c, "the header") followed by the replies Redis gives the op: valid ones (as
redis-server 7 answers) and near-valid ones (the edge of each contract, Redis < 7 answers,
errors). --capture also (re)writes the real_* seeds: the bytes a private redis-server
(tests/harness/harness.py) really answers to the commands and embedded scripts the ops send;
without it the real_* files already there are kept."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KNOWN, HOLD, PRE7, CANCEL = 4, 8, 16, 32  # H_MODE bits
AFTER1, AFTER2 = 0x40, 0x80  # H_D: cancel once 1 (2) rounds are over


def hdr(op, mode=0, seed=0, fail=0, a=0, b=0, c=0, d=0):
    return bytes([op, mode, seed, fail, a, b, c, d])


def bulk(s):
    s = s.encode() if isinstance(s, str) else s
    return b"$%d\r\n%s\r\n" % (len(s), s)


def ints(*v):
    return b"*%d\r\n" % len(v) + b"".join(b":%d\r\n" % i for i in v)


def arr(*parts):
    return b"*%d\r\n" % len(parts) + b"".join(parts)


NIL = b"$-1\r\n"
OK = b"+OK\r\n"
NOSCRIPT = b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
SHEBANG = b"-ERR Error compiling script (new function): user_script:1: unexpected symbol near '#'\r\n"
SYNTAX = b"-ERR syntax error\r\n"
WRONGTYPE = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
OOM = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"

seeds = {"locks": {}, "redlock": {}, "ratelimit": {}, "pubsub": {}, "client": {}}

# --- locks: 0 acquire, 1 release, 2 extend, 3 locked, 4 owned, 5 remaining, 6 fence.check;
#     A bit 0 fenced, bits 1-2 wait (x 40 ms), bit 3 replace; B: extend ms / fence token - 1
L = seeds["locks"]
L["acquire_free"] = hdr(0) + NIL
L["acquire_busy"] = hdr(0) + bulk("holder")
L["acquire_ok_status"] = hdr(0) + OK
L["acquire_status_other"] = hdr(0) + b"+QUEUED\r\n"
L["acquire_pre7"] = hdr(0) + SYNTAX + NIL
L["acquire_pre7_busy"] = hdr(0) + SYNTAX + bulk("holder")
L["acquire_pre7_known"] = hdr(0, PRE7) + NIL
L["acquire_wrongtype"] = hdr(0) + WRONGTYPE
L["acquire_wait_busy_then_free"] = hdr(0, 1, a=4) + bulk("x") + bulk("x") + NIL
L["acquire_wait_random_cuts"] = hdr(0, 2, seed=7, a=6) + bulk("x") + NIL
L["fenced_acquired"] = hdr(0, a=1) + ints(1, 7)
L["fenced_busy"] = hdr(0, a=1) + ints(0, 1500)
L["fenced_zero"] = hdr(0, a=1) + ints(1, 0)
L["fenced_negative"] = hdr(0, a=1) + ints(1, -42)
L["fenced_noscript"] = hdr(0, KNOWN, a=1) + NOSCRIPT + ints(1, 1)
L["fenced_shebang"] = hdr(0, a=1) + SHEBANG + ints(1, 3)
L["fenced_oom"] = hdr(0, a=1) + OOM
L["release_ok"] = hdr(1) + b":1\r\n"
L["release_not_owned"] = hdr(1) + b":0\r\n"
L["release_two"] = hdr(1) + b":2\r\n"
L["release_noscript"] = hdr(1, KNOWN) + NOSCRIPT + b":1\r\n"
L["release_bytewise"] = hdr(1, 1) + b":1\r\n"
L["extend_ok"] = hdr(2, b=200) + b":31000\r\n"
L["extend_not_owned"] = hdr(2) + b":0\r\n"
L["extend_negative"] = hdr(2, a=8) + b":-5\r\n"
L["locked_yes"] = hdr(3) + b":1\r\n"
L["locked_no"] = hdr(3) + b":0\r\n"
L["locked_many"] = hdr(3) + b":7\r\n"
L["owned_yes"] = hdr(4, HOLD) + bulk("tok")
L["owned_other"] = hdr(4, HOLD) + bulk("other")
L["owned_nil"] = hdr(4, HOLD) + NIL
L["owned_status"] = hdr(4, HOLD) + b"+tok\r\n"
L["remaining_yes"] = hdr(5, HOLD) + b":29000\r\n"
L["remaining_not_ours"] = hdr(5, HOLD) + b":-2\r\n"
L["remaining_no_ttl"] = hdr(5, HOLD) + b":-1\r\n"
L["fence_accepted"] = hdr(6, b=2) + ints(1, 3)
L["fence_refused"] = hdr(6, b=2) + ints(0, 9)
L["fence_refused_low"] = hdr(6, b=2) + ints(0, 1)
L["fence_error"] = hdr(6, b=2) + b"-ERR fence record is not an integer\r\n"
L["cancel_acquired_released"] = hdr(0, CANCEL, d=AFTER1) + NIL + b":1\r\n"
L["cancel_acquired_release_fails"] = hdr(0, CANCEL, d=AFTER1) + NIL + b"-ERR boom\r\n"
L["cancel_busy"] = hdr(0, CANCEL, d=AFTER1, a=4) + bulk("holder")
L["cancel_in_doubt"] = hdr(0, CANCEL, fail=1, d=AFTER1) + b":0\r\n"
L["cancel_fenced_acquired"] = hdr(0, CANCEL, d=AFTER1, a=1) + ints(1, 5) + b":1\r\n"
L["cancel_before_start"] = hdr(0, CANCEL) + NIL
L["cancel_release"] = hdr(1, CANCEL, d=AFTER1) + b":1\r\n"
L["bomb_array"] = hdr(0) + b"*2147483647\r\n"
L["bomb_nested"] = hdr(0, a=1) + b"*100000\r\n*100000\r\n"
L["bomb_bulk"] = hdr(3) + b"$2147483647\r\nabc"

# --- redlock over 3 nodes: 0 acquire, 1 release, 2 extend, 3 locked, 4 owned, 5 remaining;
#     H_FAIL: bit (3 * round + node) % 8 fails that node in that round
R = seeds["redlock"]
R["acquire_all"] = hdr(0) + NIL * 3
R["acquire_quorum"] = hdr(0) + NIL * 2 + bulk("other")
R["acquire_minority"] = hdr(0) + NIL + bulk("o") * 2 + b":1\r\n"
R["acquire_status"] = hdr(0) + OK + b"+QUEUED\r\n" + b"+O?\r\n"
R["acquire_one_down"] = hdr(0, fail=2) + NIL * 2
R["acquire_pre7"] = hdr(0) + SYNTAX * 3 + NIL * 3
R["acquire_wait"] = hdr(0, a=4) + bulk("o") * 3 + NIL * 3
R["cancel_acquired"] = hdr(0, CANCEL, d=AFTER1) + NIL * 2 + b":1\r\n" * 3
R["cancel_partly"] = hdr(0, CANCEL, d=AFTER1) + NIL + bulk("o") + NIL + b":1\r\n:1\r\n"
R["cancel_one_down"] = hdr(0, CANCEL, fail=4, d=AFTER1) + NIL * 2 + b":1\r\n:1\r\n:0\r\n"
R["release_all"] = hdr(1) + b":1\r\n" * 3
R["release_quorum"] = hdr(1) + b":1\r\n:1\r\n:0\r\n"
R["release_noscript"] = hdr(1, KNOWN) + NOSCRIPT + b":1\r\n:1\r\n" + b":1\r\n"
R["release_bad"] = hdr(1) + b":1\r\n:2\r\n+OK\r\n"
R["extend_all"] = hdr(2) + b":31000\r\n" * 3
R["extend_retaken"] = hdr(2) + b":31000\r\n:-30000\r\n:31000\r\n"
R["extend_no"] = hdr(2) + b":0\r\n:0\r\n:31000\r\n"
R["locked_yes"] = hdr(3) + b":1\r\n" * 3
R["locked_no"] = hdr(3) + b":0\r\n" * 3
R["owned_yes"] = hdr(4, HOLD) + bulk("tok") * 3
R["owned_mixed"] = hdr(4, HOLD) + bulk("tok") + NIL + bulk("tok")
R["remaining_yes"] = hdr(5, HOLD) + b":29000\r\n:28000\r\n:29500\r\n"
R["remaining_no"] = hdr(5, HOLD) + b":-2\r\n" * 3
R["remaining_no_ttl"] = hdr(5, HOLD) + b":-1\r\n:29000\r\n:29000\r\n"

# --- ratelimit: 0 check, 1 multi, 2 batch, 3 reset; A % 5 algorithm (A >> 3 the second
#     limit's), B % 10 + 1 the limit (B >> 4 + 1 the second's), C % 3 cost, (C >> 2) % 4 + 1
#     batch subjects, D % 3 on_error (report, fail_open, fail_closed), (D >> 2) % 4 * 3 burst
T = seeds["ratelimit"]
for algo, name in enumerate(["fixed", "log", "sliding", "bucket", "gcra"]):
    T["check_allowed_" + name] = hdr(0, a=algo, b=4, c=1) + ints(1, 0, 5, 4, 0, 1000)
    T["check_refused_" + name] = hdr(0, a=algo, b=4, c=1) + ints(0, 1, 5, 0, 250, 1000)
T["check_peek"] = hdr(0, b=4, c=0) + ints(1, 0, 5, 5, 0, 0)
# one limit's compact integer (ratelimit.lua): L = limit + 1 = 6, R = window + 2 = 1002
for algo, name in enumerate(["fixed", "log", "sliding", "bucket", "gcra"]):
    T["check_compact_allowed_" + name] = hdr(0, a=algo, b=4, c=1) + b":6009\r\n"
    T["check_compact_refused_" + name] = hdr(0, a=algo, b=4, c=1) + b":-4810802\r\n"
T["check_compact_zero"] = hdr(0, b=4, c=1) + b":0\r\n:-1\r\n"
T["check_compact_huge"] = hdr(0, a=3, b=4, c=1) + b":-9223372036854775808\r\n"
T["batch_compact"] = hdr(2, a=1, b=4, c=5) + b":6009\r\n" + ints(0, 1, 5, 0, 250, 1000)
T["multi_compact_not_one"] = hdr(1, a=0, b=0x24, c=1) + b":6009\r\n"
T["check_limit_negative"] = hdr(0, b=4, c=1) + ints(1, 0, -5, 4, 0, 1000)
T["check_remaining_over"] = hdr(0, b=4, c=1) + ints(1, 0, 5, 999, 0, 1000)
T["check_reset_negative"] = hdr(0, b=4, c=1) + ints(1, 0, 5, 4, 0, -1)
T["check_allowed_two"] = hdr(0, b=4, c=1) + ints(2, 0, 5, 4, 0, 1000)
T["check_refused_retry_negative"] = hdr(0, b=4, c=1) + ints(0, 1, 5, 0, -3, 1000)
T["check_error_report"] = hdr(0, b=4, c=1) + OOM
T["check_error_fail_open"] = hdr(0, b=4, c=1, d=1) + b"-ERR boom\r\n"
T["check_garbage_fail_closed"] = hdr(0, b=4, c=1, d=2) + b"+OK\r\n"
T["check_noscript"] = hdr(0, KNOWN, b=4, c=1) + NOSCRIPT + ints(1, 0, 5, 4, 0, 1000)
T["check_shebang"] = hdr(0, b=4, c=1) + SHEBANG + ints(1, 0, 5, 4, 0, 1000)
T["multi_allowed"] = hdr(1, a=0, b=0x24, c=1) + ints(1, 0, 5, 4, 0, 1000, 3, 2, 0, 1000)
T["multi_refused_second"] = hdr(1, a=0, b=0x24, c=1) + ints(0, 2, 5, 4, 0, 1000, 3, 0, 400, 1000)
T["multi_refused_by_bad"] = hdr(1, a=0, b=0x24, c=1) + ints(0, 7, 5, 4, 0, 1000, 3, 0, 400, 1000)
T["batch_two"] = hdr(2, b=4, c=5) + ints(1, 0, 5, 4, 0, 1000) + ints(0, 1, 5, 0, 10, 1000)
T["batch_four_costs"] = hdr(2, a=128, b=4, c=0x3d) + ints(1, 0, 5, 4, 0, 1000) * 4
T["batch_noscript_one"] = hdr(2, KNOWN, b=4, c=5) + NOSCRIPT + ints(1, 0, 5, 4, 0, 1000) \
    + ints(1, 0, 5, 3, 0, 1000)
T["batch_one_bad_fail_open"] = hdr(2, b=4, c=5, d=1) + ints(1, 0, 5, 4, 0, 1000) + b":1\r\n"
T["cancel_check"] = hdr(0, CANCEL, b=4, c=1, d=AFTER1) + ints(1, 0, 5, 4, 0, 1000)
T["reset_ok"] = hdr(3) + b":2\r\n"
T["reset_none"] = hdr(3) + b":0\r\n"
T["reset_status"] = hdr(3) + OK
T["reset_many"] = hdr(3) + b":9\r\n"

# --- pubsub: 0 publish, 1 listen; A bit 0 channels (bit 2: a and b), bit 1 the pattern p*;
#     C % 3 + 1 messages fed at a time
P = seeds["pubsub"]
P["publish"] = hdr(0) + b":3\r\n"
P["publish_zero"] = hdr(0) + b":0\r\n"
P["publish_negative"] = hdr(0) + b":-1\r\n"
P["publish_status"] = hdr(0) + OK
sub_a = arr(bulk("subscribe"), bulk("a"), b":1\r\n")
sub_b = arr(bulk("subscribe"), bulk("b"), b":2\r\n")
psub = arr(bulk("psubscribe"), bulk("p*"), b":2\r\n")
msg = arr(bulk("message"), bulk("a"), bulk("hello"))
pmsg = arr(bulk("pmessage"), bulk("p*"), bulk("px"), bulk("hi"))
P["listen_channel"] = hdr(1, a=1) + sub_a + msg + msg
P["listen_two_channels"] = hdr(1, a=5, c=1) + sub_a + sub_b + msg
P["listen_pattern"] = hdr(1, a=3, c=2) + sub_a + psub + pmsg + msg
P["listen_bytewise"] = hdr(1, 1, a=1) + sub_a + msg
P["listen_pong"] = hdr(1, a=1) + sub_a + arr(bulk("pong"), bulk("")) + msg
P["listen_unsubscribe_nil"] = hdr(1, a=1) + sub_a + arr(bulk("unsubscribe"), NIL, b":0\r\n")
P["listen_count_negative"] = hdr(1, a=1) + arr(bulk("subscribe"), bulk("a"), b":-1\r\n")
P["listen_message_status"] = hdr(1, a=1) + sub_a + arr(bulk("message"), b"+a\r\n", bulk("x"))
P["listen_error"] = hdr(1, a=1) + b"-ERR only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT allowed\r\n"
P["listen_reconnect"] = hdr(1, a=1, fail=2) + sub_a + sub_a + msg
P["listen_cancel"] = hdr(1, CANCEL, a=1, d=AFTER1) + sub_a + msg
P["listen_nothing_wanted"] = hdr(1) + b"+PONG\r\n"

# --- client: 0 handshake, 1 command; A % 4 the URL (":pw@/3", "user:pw@", "/2",
#     "user:pw@/15"), B bit 0: MGET k1 k2 instead of GET k1
C = seeds["client"]
C["handshake_auth_select"] = hdr(0, a=0) + OK + OK
C["handshake_auth"] = hdr(0, a=1) + OK
C["handshake_select"] = hdr(0, a=2) + OK
C["handshake_wrongpass"] = hdr(0, a=3) + b"-WRONGPASS invalid username-password pair or user is disabled.\r\n" + OK
C["handshake_select_bad"] = hdr(0, a=0) + OK + b"-ERR DB index is out of range\r\n"
C["handshake_queued"] = hdr(0, a=0) + b"+QUEUED\r\n" + OK
C["handshake_bytewise"] = hdr(0, 1, a=3) + OK + OK
C["handshake_cancel"] = hdr(0, CANCEL, a=0, d=AFTER1) + OK + OK
C["command_get"] = hdr(1) + bulk("value")
C["command_get_nil"] = hdr(1) + NIL
C["command_error"] = hdr(1) + WRONGTYPE
C["command_mget"] = hdr(1, b=1) + arr(bulk("a"), NIL)
C["command_nested"] = hdr(1, 2, seed=3) + arr(arr(b":1\r\n", arr(bulk("x"))), b"*-1\r\n", b"*0\r\n")


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Raw:
    """One connection that returns the raw bytes of each reply (the fuzz input's bytes)."""

    def __init__(self, port):
        import socket
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self.read_one()

    def read_one(self):
        import time
        buf = b""
        deadline = time.time() + 5
        while time.time() < deadline:
            n = complete(buf)
            if n:
                return buf[:n]
            buf += self.s.recv(65536)
        raise RuntimeError("no whole reply: %r" % buf)


def complete(b, at=0):
    """End offset of the whole RESP2 reply at b[at:], or 0."""
    end = b.find(b"\r\n", at)
    if end < 0:
        return 0
    t, line = b[at:at + 1], b[at + 1:end]
    if t in b"+-:":
        return end + 2
    if t == b"$":
        n = int(line)
        return 0 if n >= 0 and len(b) < end + 2 + n + 2 else (end + 2 if n < 0 else end + 4 + n)
    if t == b"*":
        pos = end + 2
        for _ in range(max(int(line), 0)):
            pos = complete(b, pos)
            if not pos:
                return 0
        return pos
    raise ValueError("not RESP: %r" % b[at:at + 20])


def script(name):
    with open(os.path.join(HERE, "..", "..", "core", "scripts", name + ".lua"), "rb") as f:
        return f.read()


def capture():
    """The real_* seeds: what redis-server answers to what the ops send (keys as the ops
    make them: namespace "t", lock "r", token "tok", ttl 30000)."""
    sys.path.insert(0, os.path.join(HERE, "..", "harness"))
    import harness
    out = {f: {} for f in seeds}
    key, fence_key = b"t:lock:{r}", b"t:lock:{r}:fence"
    with harness.RedisServer() as srv:
        r = Raw(srv.port)
        L, R, T, P, C = (out[f] for f in ("locks", "redlock", "ratelimit", "pubsub", "client"))
        r.call("FLUSHALL")
        free = r.call("SET", key, "tok", "NX", "PX", 30000, "GET")
        busy = r.call("SET", key, "tok", "NX", "PX", 30000, "GET")
        L["real_acquire_free"] = hdr(0) + free
        L["real_acquire_busy"] = hdr(0, a=2) + busy + busy + free
        R["real_acquire_all"] = hdr(0) + free * 3
        R["real_acquire_minority"] = hdr(0) + free + busy * 2 + r.call("EVAL", script("lock_release"), 1, key, "nope") * 3
        L["real_locked"] = hdr(3) + r.call("EXISTS", key)
        L["real_owned"] = hdr(4, HOLD) + r.call("GET", key)
        rem = r.call("EVAL", script("lock_remaining"), 1, key, "tok")
        L["real_remaining"] = hdr(5, HOLD) + rem
        R["real_remaining"] = hdr(5, HOLD) + rem * 3
        ext = r.call("EVAL", script("lock_extend"), 1, key, "tok", 1200, 0)
        L["real_extend"] = hdr(2, b=200) + ext
        R["real_extend"] = hdr(2, b=200) + r.call("EVAL", script("redlock_extend"), 1, key, "tok", 1200, 0) * 3
        rel = r.call("EVAL", script("lock_release"), 1, key, "tok")
        L["real_release"] = hdr(1) + rel
        L["real_release_again"] = hdr(1) + r.call("EVAL", script("lock_release"), 1, key, "tok")
        R["real_release"] = hdr(1) + rel * 3
        L["real_remaining_gone"] = hdr(5, HOLD) + r.call("EVAL", script("lock_remaining"), 1, key, "tok")
        fa = r.call("EVAL", script("lock_acquire_fenced"), 2, key, fence_key, "tok", 30000)
        fb = r.call("EVAL", script("lock_acquire_fenced"), 2, key, fence_key, "tok", 30000)
        L["real_fenced_acquired"] = hdr(0, a=1) + fa
        L["real_fenced_busy"] = hdr(0, a=1) + fb
        r.call("SET", b"t:lock:{q}", "x")
        L["real_acquire_pre7_script_busy"] = hdr(0, PRE7) + r.call(
            "EVAL", script("lock_acquire"), 1, key, "tok", 30000)
        r.call("DEL", key)
        r.call("RPUSH", key, "x")
        L["real_acquire_wrongtype"] = hdr(0) + r.call("SET", key, "tok", "NX", "PX", 30000, "GET")
        L["real_fenced_wrongtype"] = hdr(0, a=1) + r.call(
            "EVAL", script("lock_acquire_fenced"), 2, key, fence_key, "tok", 30000)
        L["real_noscript"] = hdr(1, KNOWN) + r.call("EVALSHA", "0" * 40, 1, key, "tok") + rel
        L["real_fence_accepted"] = hdr(6, b=2) + r.call("EVAL", script("fence_check"), 1, b"t:fence:{res}", 3)
        L["real_fence_refused"] = hdr(6, b=0) + r.call("EVAL", script("fence_check"), 1, b"t:fence:{res}", 1)
        # ratelimit (queue_check): one limit: the algorithm's letter then the cost unless 1,
        # limit, window (a burst only when it is not the limit); N limits: cost, N, then
        # algorithm, limit, window, burst per limit
        for algo, name in enumerate(["fixed", "log", "sliding", "bucket", "gcra"], 1):
            k = [b"t:ratelimit:api:{%s}" % name.encode(), b"t:ratelimit:api:{%s}:seq" % name.encode()]
            nk = 2 if algo == 2 else 1
            replies = [r.call("EVAL", script("ratelimit"), nk, *k[:nk], "flctg"[algo - 1], 5, 1000)
                       for _ in range(6)]
            T["real_check_%s_allowed" % name] = hdr(0, a=algo - 1, b=4, c=1) + replies[0]
            T["real_check_%s_refused" % name] = hdr(0, a=algo - 1, b=4, c=1) + replies[5]
            T["real_batch_%s" % name] = hdr(2, a=algo - 1, b=4, c=5) + replies[1] + replies[5]
        k = [b"t:ratelimit:api:{m}", b"t:ratelimit:api:{m}:seq", b"t:ratelimit:burst:{m}", b"t:ratelimit:burst:{m}:seq"]
        T["real_multi"] = hdr(1, a=0, b=0x24, c=1) + r.call("EVAL", script("ratelimit"), 4, *k, 1, 2, 1, 5, 1000, 0, 1, 3, 1000, 0)
        T["real_reset"] = hdr(3) + r.call("UNLINK", *k[:2])
        P["real_publish"] = hdr(0) + r.call("PUBLISH", "ch", "hello")
        sub = Raw(srv.port)
        sub.s.sendall(resp("SUBSCRIBE", "a"))
        s1 = sub.read_one()
        sub.s.sendall(resp("PSUBSCRIBE", "p*"))
        s2 = sub.read_one()
        r.call("PUBLISH", "a", "hello")
        m1 = sub.read_one()
        r.call("PUBLISH", "px", "hi")
        m2 = sub.read_one()
        sub.s.sendall(resp("PING"))
        pong = sub.read_one()
        P["real_listen"] = hdr(1, a=3, c=2) + s1 + s2 + m1 + m2 + pong + m1
        C["real_command_get"] = hdr(1) + r.call("GET", "k1")
        C["real_command_mget"] = hdr(1, b=1) + r.call("MGET", "k1", "k2")
        C["real_select_bad"] = hdr(0, a=2) + r.call("SELECT", 99)
        C["real_auth_no_password"] = hdr(0, a=1) + r.call("AUTH", "user", "pw")
        r.call("CONFIG", "SET", "requirepass", "pw")
        C["real_auth_select"] = hdr(0, a=0) + r.call("AUTH", "pw") + r.call("SELECT", 3)
        C["real_auth_wrong"] = hdr(0, a=0) + r.call("AUTH", "nope") + r.call("SELECT", 3)
    return out


def main():
    real = capture() if "--capture" in sys.argv[1:] else None
    for fam, items in seeds.items():
        d = os.path.join(HERE, "corpus", fam)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if real is not None or not f.startswith("real_"):
                os.unlink(os.path.join(d, f))
        if real is not None:
            items = dict(items, **real[fam])
        for name, data in items.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print("%s: %d seeds" % (fam, len(items)), file=sys.stderr)


if __name__ == "__main__":
    main()
