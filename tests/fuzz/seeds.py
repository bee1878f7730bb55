#!/usr/bin/env python3
"""Writes the seed corpus tests/fuzz/corpus/<family>/ (checked in; run again after changing
it: python3 tests/fuzz/seeds.py [--capture[=FAMILY,...]]). Each seed is the harness' 8-byte header
(fuzz_ops.c, "the header") followed by the replies Redis gives the op: valid ones (as
redis-server 7 answers) and near-valid ones (the edge of each contract, Redis < 7 answers,
errors). --capture also (re)writes the real_* seeds: the bytes a private redis-server
(tests/harness/harness.py) really answers to the commands and embedded scripts the ops send;
without it the real_* files already there are kept (--capture=cache: only that family's are
rewritten)."""
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

seeds = {"locks": {}, "redlock": {}, "ratelimit": {}, "pubsub": {}, "client": {}, "cache": {}}

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


# --- cache: 0 get, 1 get_or_load, 2 set, 3 write, 4 delete, 5 invalidate_tags, 6 near_apply;
#     A bits 0-1 stampede (none lock swr xfetch), bit 2 near-cache, bit 3 negative_ttl 0,
#     bit 4 unversioned, bits 5-6 tags (t1..t3), bit 7 key "k2"; B bits 0-2 the CALL's answer
#     (value, nothing, failure, user cancel, driver cancel, "", 8 KiB, failure without a
#     message), bit 3 stepped while it runs, bit 4 set / write carry a value, bit 5 random
#     0.5, bits 6-7 near-cache before (off, armed, "k" = "nv", "k" negative); C % 8 near_apply
#     records [kind][len][data] first (kind: message pmessage subscribe psubscribe unsubscribe
#     reconnect pong, 7: data is the kind; bit 7: no data); D bit 0 jitter, bit 1 the near
#     entry expired, bit 2 swr stale 200 ms, bit 3 beta 1e6, bit 4 load_timeout 1 ms
NONE_, LOCK_, SWR_, XFETCH_ = 0, 1, 2, 3
NEAR, NEG0, UNVERSIONED, KEY2 = 4, 8, 16, 128


def tagsn(n):
    return n << 5


ANS_VALUE, ANS_NOTHING, ANS_FAIL, ANS_UCANCEL, ANS_DCANCEL, ANS_EMPTY, ANS_BIG, ANS_SILENT = range(8)
STEPPED, HAS_VALUE, RANDOM = 8, 16, 32
NEAR_ARMED, NEAR_VALUE, NEAR_NEGATIVE = 64, 128, 192


def read(found=0, value=None, negative=0, pttl=0, delta=0, stale=0, locked=0, gen=None, now=0,
         tags=()):
    """The reply of cache_read.lua (false is nil in RESP)."""
    parts = [b":%d\r\n" % found, bulk(value) if value is not None else NIL,
             b":%d\r\n" % negative, b":%d\r\n" % pttl, b":%d\r\n" % delta,
             b":%d\r\n" % stale, b":%d\r\n" % locked, bulk(gen) if gen is not None else NIL,
             b":%d\r\n" % now]
    for tag, version in tags:
        parts += [bulk(tag), bulk(version)]
    return arr(*parts)


def rec(kind, data=b""):
    data = data.encode() if isinstance(data, str) else data
    return bytes([kind, len(data)]) + data


def peek(value=None, negative=0, pttl=900, delta=0, stale=None, tags=(), extra=()):
    """The peek get / get_or_load begin with: HGETALL <entry> (the fields cache_store.lua
    writes: v value | n negative, d compute time, s swr's stale window, t:<tag> versions)
    then PTTL <entry>; the tags' GETs follow them."""
    fields = ["n", "1"] if negative else ["v", value if value is not None else "x"]
    fields += ["d", str(delta)]
    if stale is not None:
        fields += ["s", str(stale)]
    for tag, version in tags:
        fields += ["t:" + tag, version]
    fields += list(extra)
    return arr(*[bulk(f) for f in fields]) + b":%d\r\n" % pttl


PEEK_MISS = b"*0\r\n:-2\r\n"
PUB = "0123456789abcdef"
NOW = 1764640000000
MISS_LOCKED = read(0, locked=1, gen="1764640000000001", now=NOW)
MISS_BUSY = read(0, locked=0, now=NOW)
HIT = read(1, "cached", pttl=950, delta=3)
PEEK_HIT = peek("cached", pttl=950, delta=3)
K = seeds["cache"]
K["get_hit"] = hdr(0, a=LOCK_) + PEEK_HIT
K["get_miss"] = hdr(0, a=LOCK_) + PEEK_MISS
K["get_negative"] = hdr(0, a=LOCK_) + peek(negative=1, pttl=400)
K["get_empty_value"] = hdr(0, a=LOCK_) + peek("", pttl=1)
K["get_no_ttl"] = hdr(0, a=LOCK_) + peek("v", pttl=-1)
K["get_entry_without_value"] = hdr(0, a=LOCK_) + arr(bulk("d"), bulk("0")) + b":900\r\n"
K["get_found_two"] = hdr(0, a=LOCK_) + peek("v", extra=["n", "1"])
K["get_tags_current"] = hdr(0, a=LOCK_ | tagsn(2)) + peek("v", tags=[("t1", "5"), ("t2", "0")]) \
    + bulk("5") + NIL
K["get_tags_stale"] = hdr(0, a=LOCK_ | tagsn(1)) + peek("v", tags=[("t1", "5")]) + bulk("6")
K["get_tags_unknown"] = hdr(0, a=LOCK_ | tagsn(1)) + peek("v", tags=[("t1", "0"), ("t9", "2")]) \
    + NIL + bulk("2")
K["get_tags_unknown_stale"] = hdr(0, a=LOCK_) + peek("v", tags=[("t9", "2")]) + bulk("3")
K["get_tags_too_many"] = hdr(0, a=LOCK_ | tagsn(1)) + peek("v", tags=[("x%d" % i, "1") for i in range(17)]) \
    + NIL + NIL * 17
K["get_tags_sixteen"] = hdr(0, a=LOCK_ | tagsn(1)) + peek("v", tags=[("x%d" % i, "1") for i in range(16)]) \
    + NIL + bulk("1") * 16
K["load_tags_unknown_stale"] = hdr(1, a=LOCK_ | tagsn(1)) + peek("v", tags=[("t1", "0"), ("t9", "2")]) \
    + NIL + bulk("3") + MISS_LOCKED + NIL + bulk("3") + b":1\r\n" + b":1\r\n" * 2
# an entry field "t:" (the tag ""): the cache never writes one, a protocol error (it was a
# UBSan report in check_tags: core-requests.md "## fuzz2")
K["get_tag_empty_name"] = hdr(0, a=LOCK_) + peek("v", tags=[("", "1")]) + NIL
K["get_tag_version_int"] = hdr(0, a=LOCK_ | tagsn(1)) + peek("v", tags=[("t1", "5")]) + b":5\r\n"
K["get_swr_stale"] = hdr(0, a=SWR_) + peek("old", pttl=500, stale=1000)
K["get_swr_fresh"] = hdr(0, a=SWR_, d=4) + peek("v", pttl=5000, stale=200)
K["get_swr_edge"] = hdr(0, a=SWR_) + peek("v", pttl=0, stale=0)
K["get_swr_no_ttl"] = hdr(0, a=SWR_) + peek("v", pttl=-1, stale=1000)
K["get_stale_bad"] = hdr(0, a=SWR_) + peek("v", pttl=5, stale="-3")
K["get_delta_bad"] = hdr(0, a=LOCK_) + peek("v", delta="x1")
K["get_delta_long"] = hdr(0, a=LOCK_) + peek("v", delta="9" * 19)
K["get_fields_twice"] = hdr(0, a=LOCK_) + peek("a", extra=["v", "b", "d", "7", "zz", "?"])
K["get_pttl_gone"] = hdr(0, a=LOCK_) + peek("v", pttl=-2)
K["get_pttl_string"] = hdr(0, a=LOCK_) + arr(bulk("v"), bulk("x")) + bulk("900")
K["get_pttl_error"] = hdr(0, a=LOCK_) + arr(bulk("v"), bulk("x")) + b"-ERR boom\r\n"
K["get_hash_nil"] = hdr(0, a=LOCK_) + b"*-1\r\n:900\r\n"
K["get_hash_ints"] = hdr(0, a=LOCK_) + ints(1, 2) + b":900\r\n"
K["get_odd_tags"] = hdr(0, a=LOCK_) + arr(bulk("v"), bulk("x"), bulk("t:t1")) + b":900\r\n"
K["get_short"] = hdr(0, a=LOCK_) + ints(1, 0, 0)
K["get_error"] = hdr(0, a=LOCK_) + WRONGTYPE + b":900\r\n"
K["load_noscript"] = hdr(1, KNOWN, a=LOCK_) + PEEK_MISS + NOSCRIPT + MISS_LOCKED + b":1\r\n"
K["load_pre7_shebang"] = hdr(1, a=LOCK_) + PEEK_MISS + SHEBANG + HIT
K["get_bytewise"] = hdr(0, 1, a=LOCK_ | tagsn(1)) + peek("v", tags=[("t1", "0")]) + NIL
K["get_random_cuts"] = hdr(0, 2, seed=9, a=LOCK_ | tagsn(2)) + peek("v", tags=[("t1", "0"), ("t7", "1")]) \
    + NIL + NIL + bulk("1")
K["get_near_hit"] = hdr(0, a=LOCK_ | NEAR, b=NEAR_VALUE)
K["get_near_negative"] = hdr(0, a=LOCK_ | NEAR, b=NEAR_NEGATIVE)
K["get_near_expired"] = hdr(0, a=LOCK_ | NEAR, b=NEAR_VALUE, d=2) + PEEK_HIT
K["get_near_unarmed"] = hdr(0, a=LOCK_ | NEAR) + PEEK_HIT
K["get_near_fill"] = hdr(0, a=LOCK_ | NEAR | tagsn(1), b=NEAR_ARMED) + peek("v", tags=[("t1", "1")]) + bulk("1")
K["get_near_swr_stale"] = hdr(0, a=SWR_ | NEAR, b=NEAR_ARMED) + peek("v", pttl=10, stale=1000)
K["get_near_dropped"] = hdr(0, a=LOCK_ | NEAR, b=NEAR_VALUE, c=1) + rec(0, PUB + ":1:k:k") + PEEK_HIT
K["get_near_tag_dropped"] = hdr(0, a=LOCK_ | NEAR | tagsn(1), b=NEAR_VALUE, c=1) + rec(0, PUB + ":1:t:t1") \
    + peek("v", tags=[("t1", "1")]) + bulk("1")
K["get_near_reconnect"] = hdr(0, a=LOCK_ | NEAR, b=NEAR_VALUE, c=1) + rec(5) + PEEK_HIT
K["get_near_other_message"] = hdr(0, a=LOCK_ | NEAR, b=NEAR_VALUE, c=2) + rec(0, "hello") + rec(2) + PEEK_HIT
K["get_near_gap"] = hdr(0, a=LOCK_ | NEAR, b=NEAR_VALUE, c=2) + rec(0, PUB + ":1:k:x") + rec(0, PUB + ":3:k:y") + PEEK_HIT
K["load_hit"] = hdr(1, a=LOCK_) + PEEK_HIT
K["load_hit_negative"] = hdr(1, a=LOCK_) + peek(negative=1, pttl=300)
K["load_hit_tags"] = hdr(1, a=LOCK_ | tagsn(1)) + peek("v", tags=[("t1", "4"), ("t5", "0")]) + bulk("4") + NIL
K["load_peek_bad_then_nothing"] = hdr(1, a=LOCK_) + peek("v", delta="-1") + MISS_LOCKED
K["load_swr_fresh"] = hdr(1, a=SWR_, d=4) + peek("v", pttl=5000, stale=200)
K["load_swr_refreshed_meanwhile"] = hdr(1, a=SWR_) + peek("old", pttl=100, stale=1000) + read(1, "new", pttl=2000)
K["load_xfetch_early_none"] = hdr(1, a=XFETCH_ | tagsn(1), b=RANDOM | ANS_NOTHING, d=8) + peek("v", pttl=10, delta=50, tags=[("t1", "2")]) \
    + bulk("2") + read(1, "v", pttl=9, delta=50, gen="4", now=NOW, tags=[("t1", "2")]) + bulk("2") + b":1\r\n" + b":1\r\n"
K["load_xfetch_drawn"] = hdr(1, a=XFETCH_, d=8) + peek("v", pttl=1000, delta=5) + read(1, "v", pttl=999, delta=5, gen="4", now=NOW) + b":1\r\n"
K["load_miss_fill"] = hdr(1, a=LOCK_) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_miss_not_stored"] = hdr(1, a=LOCK_) + PEEK_MISS + MISS_LOCKED + b":0\r\n"
K["load_miss_nothing"] = hdr(1, a=LOCK_, b=ANS_NOTHING) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_miss_nothing_neg0"] = hdr(1, a=LOCK_ | NEG0, b=ANS_NOTHING) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_miss_nothing_neg0_none"] = hdr(1, a=NONE_ | NEG0, b=ANS_NOTHING) + PEEK_MISS + read(0, now=NOW)
K["load_fail_released"] = hdr(1, a=LOCK_, b=ANS_FAIL) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_fail_release_fails"] = hdr(1, a=LOCK_, b=ANS_FAIL) + PEEK_MISS + MISS_LOCKED
K["load_fail_silent"] = hdr(1, a=LOCK_, b=ANS_SILENT) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_fail_none"] = hdr(1, a=NONE_, b=ANS_FAIL) + PEEK_MISS + read(0, now=NOW)
K["load_user_cancel"] = hdr(1, a=LOCK_, b=ANS_UCANCEL | STEPPED) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_driver_cancel"] = hdr(1, a=LOCK_, b=ANS_DCANCEL) + PEEK_MISS + MISS_LOCKED + b":0\r\n"
K["load_cancel_after_fill"] = hdr(1, CANCEL, a=LOCK_, d=AFTER1 | AFTER2) + PEEK_MISS + MISS_LOCKED + b":1\r\n" + b":1\r\n"
K["load_empty_value"] = hdr(1, a=LOCK_, b=ANS_EMPTY | STEPPED) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_big_value"] = hdr(1, a=LOCK_, b=ANS_BIG) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_wait_then_hit"] = hdr(1, a=LOCK_) + PEEK_MISS + MISS_BUSY + MISS_BUSY + HIT
K["load_wait_then_lock"] = hdr(1, a=LOCK_) + PEEK_MISS + MISS_BUSY + MISS_LOCKED + b":1\r\n"
K["load_wait_forever"] = hdr(1, a=LOCK_) + PEEK_MISS + MISS_BUSY * 12
K["load_lock_refused"] = hdr(1, a=LOCK_) + PEEK_MISS + read(0, locked=2, gen="7", now=NOW) + OOM
K["load_fill_oom"] = hdr(1, a=LOCK_) + PEEK_MISS + MISS_LOCKED + OOM + b":1\r\n"
K["load_none_fill"] = hdr(1, a=NONE_) + PEEK_MISS + read(0, gen="0", now=NOW) + b":1\r\n"
K["load_unversioned"] = hdr(1, a=LOCK_ | UNVERSIONED) + PEEK_MISS + read(0, locked=1, now=NOW) + b":1\r\n"
K["load_swr_refresh"] = hdr(1, a=SWR_) + peek("old", pttl=500, stale=1000) + read(1, "old", pttl=500, stale=1, locked=1, gen="3", now=NOW) + b":1\r\n"
K["load_swr_stale_other"] = hdr(1, a=SWR_) + peek("old", pttl=500, stale=1000) + read(1, "old", pttl=500, stale=1, locked=0, now=NOW)
K["load_xfetch_early"] = hdr(1, a=XFETCH_, b=RANDOM, d=8) + peek("v", pttl=10, delta=50) + read(1, "v", pttl=10, delta=50, gen="4", now=NOW) + b":1\r\n"
K["load_xfetch_keep"] = hdr(1, a=XFETCH_, b=RANDOM) + peek("v", pttl=900000, delta=1)
K["load_xfetch_no_ttl"] = hdr(1, a=XFETCH_, b=RANDOM) + peek("v", pttl=-1, delta=1) + read(1, "v", pttl=-1, delta=1, gen="4", now=NOW) + b":1\r\n"
K["load_tags_stale_relock"] = hdr(1, a=LOCK_ | tagsn(1)) + peek("v", pttl=900, tags=[("t1", "1")]) + bulk("2") \
    + MISS_LOCKED + bulk("2") + b":1\r\n" + b":1\r\n"
K["load_tags_fill"] = hdr(1, a=LOCK_ | tagsn(2)) + PEEK_MISS + NIL + bulk("9") + MISS_LOCKED + NIL + bulk("9") + b":1\r\n" + b":1\r\n" * 2
K["load_near_fill"] = hdr(1, a=LOCK_ | NEAR, b=NEAR_ARMED) + PEEK_MISS + MISS_LOCKED + b":1\r\n"
K["load_near_hit"] = hdr(1, a=LOCK_ | NEAR, b=NEAR_VALUE)
K["load_timeout_1"] = hdr(1, a=LOCK_, d=16) + PEEK_MISS + MISS_LOCKED + b":0\r\n"
K["set_value"] = hdr(2, b=HAS_VALUE) + b":1\r\n"
K["set_negative"] = hdr(2) + b":1\r\n"
K["set_negative_neg0"] = hdr(2, a=NEG0) + b":1\r\n"
K["set_tags"] = hdr(2, a=tagsn(2), b=HAS_VALUE) + bulk("3") + NIL + b":1\r\n" + b":1\r\n" * 2
K["set_not_stored"] = hdr(2, b=HAS_VALUE) + b":0\r\n"
K["set_two"] = hdr(2, b=HAS_VALUE) + b":2\r\n"
K["set_oom"] = hdr(2, b=HAS_VALUE) + OOM
K["set_near"] = hdr(2, a=NEAR, b=HAS_VALUE | NEAR_VALUE) + b":1\r\n"
K["set_cancel_after_store"] = hdr(2, CANCEL, b=HAS_VALUE, d=AFTER1) + b":1\r\n"
K["write_value"] = hdr(3, b=HAS_VALUE | ANS_VALUE) + b":1\r\n"
K["write_negative"] = hdr(3, b=ANS_NOTHING) + b":1\r\n"
K["write_refused"] = hdr(3, b=HAS_VALUE | ANS_FAIL)
K["write_tags"] = hdr(3, a=tagsn(1), b=HAS_VALUE | STEPPED) + bulk("4") + b":1\r\n" + b":1\r\n"
K["write_cancelled"] = hdr(3, b=HAS_VALUE | ANS_UCANCEL)
K["delete_hit"] = hdr(4) + b":1\r\n"
K["delete_miss"] = hdr(4) + b":0\r\n"
K["delete_near"] = hdr(4, a=NEAR, b=NEAR_VALUE) + b":1\r\n"
K["delete_bad"] = hdr(4) + bulk("1")
K["tags_one"] = hdr(5, a=tagsn(1)) + bulk("1764640000000001")
K["tags_three"] = hdr(5, a=tagsn(3)) + bulk("1") + bulk("2") + bulk("3")
K["tags_int"] = hdr(5, a=tagsn(1)) + b":1\r\n"
K["tags_near"] = hdr(5, a=NEAR | tagsn(1), b=NEAR_VALUE) + bulk("9")
K["tags_noscript"] = hdr(5, KNOWN, a=tagsn(2)) + NOSCRIPT + bulk("1") + bulk("2")
K["apply_sequence"] = hdr(6, a=NEAR, b=NEAR_VALUE) + rec(0, PUB + ":1:k:x") + rec(0, PUB + ":2:k:k") \
    + rec(1, PUB + ":3:t:t1") + rec(0, PUB + ":5:k:z") + rec(4) + rec(2) + rec(0, "junk")
K["apply_kinds"] = hdr(6, a=NEAR, b=NEAR_ARMED) + rec(2) + rec(3) + rec(6) + rec(5) + rec(7, "subscribe") \
    + rec(7, "x") + rec(128) + rec(0)
K["apply_no_near"] = hdr(6) + rec(2) + rec(0, PUB + ":1:k:k") + rec(5)
K["apply_tag_drop"] = hdr(6, a=NEAR | tagsn(2), b=NEAR_VALUE) + rec(0, PUB + ":1:t:t2") + rec(0, PUB + ":1:t:t2")
K["apply_seq_big"] = hdr(6, a=NEAR, b=NEAR_VALUE) + rec(0, PUB + ":18446744073709551615:k:k") \
    + rec(0, PUB + ":99999999999999999999999:k:k") + rec(0, PUB + ":0:k:")


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
        r.call("CONFIG", "SET", "requirepass", "")
        capture_cache(r, out["cache"])
    return out


def capture_cache(r, K):
    """The cache's real replies (cache "c", key "k", tag "t1"; the ops' keys): the peek's
    HGETALL / PTTL / GET and the scripts', in the order the ops send them."""
    import time
    ek, gk, lk = b"t:cache:{c:k}", b"t:cache:{c:k}:gen", b"t:cache:{c:k}:lock"
    tk = b"t:cache:{c:t1}:tag"
    tok, other = "0123456789abcdef" * 2, "fedcba9876543210" * 2
    chan, msg = "t:cache:c:inv", PUB + ":1:k:k"

    def cread(token, as_miss="0", genmode="1", *pairs):
        return r.call("EVAL", script("cache_read"), 3, ek, gk, lk, token, 50, as_miss, genmode,
                      *pairs)

    def cstore(mode, gen="", token="", ttl=1000, stale=0, vn="v", value="lv", tags=()):
        args = [mode, gen, int(time.time() * 1000), 60000, token, ttl, stale, 3, vn, value,
                chan if mode != "f" else "", msg if mode != "f" else ""]
        for t, v in tags:
            args += [t, v]
        return r.call("EVAL", script("cache_store"), 3, ek, gk, lk, *args)

    def cpeek(*tag_keys):  # what get / get_or_load send first: HGETALL, PTTL, the tags' GETs
        out = r.call("HGETALL", ek) + r.call("PTTL", ek)
        for t in tag_keys:
            out += r.call("GET", t)
        return out

    def gen_of(read_reply):  # the generation a read script's reply carries (8th element)
        parts, at = [], read_reply.index(b"\r\n") + 2
        while at < len(read_reply):
            end = complete(read_reply, at)
            parts.append(read_reply[at:end])
            at = end
        g = parts[7]
        return g[g.index(b"\n") + 1:-2].decode() if g.startswith(b"$") and g != NIL else ""

    r.call("FLUSHALL")
    peek_miss = cpeek()
    K["real_get_miss"] = hdr(0, a=LOCK_) + peek_miss
    miss = cread(tok)
    busy = cread(other)
    fill = cstore("f", gen=gen_of(miss), token=tok)
    hit = cread(tok)
    peek_hit = cpeek()
    K["real_get_hit"] = hdr(0, a=LOCK_) + peek_hit
    K["real_load_hit"] = hdr(1, a=LOCK_) + peek_hit
    K["real_load_fill"] = hdr(1, a=LOCK_) + peek_miss + miss + fill
    K["real_load_wait_then_hit"] = hdr(1, a=LOCK_) + peek_miss + busy + hit
    K["real_load_noscript"] = hdr(1, KNOWN, a=LOCK_) + peek_miss + r.call("EVALSHA", "0" * 40, 0) + hit
    version = r.call("EVAL", script("cache_tag"), 1, tk, 60000, chan, PUB + ":2:t:t1")
    K["real_tags"] = hdr(5, a=tagsn(1)) + version
    tag_get = r.call("GET", tk)
    v1 = tag_get[tag_get.index(b"\n") + 1:-2].decode()
    tagged = cstore("w", tags=[("t1", v1)])
    pexpire = r.call("PEXPIRE", tk, 60000)
    K["real_set_tags"] = hdr(2, a=tagsn(1), b=HAS_VALUE) + tag_get + tagged + pexpire
    K["real_get_tags"] = hdr(0, a=LOCK_ | tagsn(1)) + cpeek(tk)
    K["real_get_tags_unknown"] = hdr(0, a=LOCK_) + cpeek() + r.call("GET", tk)
    stale_tag = r.call("EVAL", script("cache_tag"), 1, tk, 60000, chan, PUB + ":3:t:t1")
    K["real_get_tags_stale"] = hdr(0, a=LOCK_ | tagsn(1)) + cpeek(tk)
    peek_stale = cpeek(tk)
    relock = cread(tok, "1", "1", "t1", v1)
    K["real_load_tags_stale"] = hdr(1, a=LOCK_ | tagsn(1)) + peek_stale + relock + r.call("GET", tk) \
        + cstore("f", gen=gen_of(relock), token=tok, tags=[("t1", "2")]) + pexpire
    K["real_tags_again"] = hdr(5, a=tagsn(1)) + stale_tag
    K["real_set"] = hdr(2, b=HAS_VALUE) + cstore("w")
    K["real_delete_hit"] = hdr(4) + cstore("d")
    K["real_delete_miss"] = hdr(4) + cstore("d")
    cstore("w", vn="n", value="")
    K["real_get_negative"] = hdr(0, a=LOCK_) + cpeek()
    K["real_load_negative"] = hdr(1, a=LOCK_) + cpeek()
    r.call("DEL", lk)
    cstore("w", ttl=100000, stale=200000)  # swr: stale once its TTL left is within 200 s
    K["real_get_swr_stale"] = hdr(0, a=SWR_) + cpeek()
    swr_peek = cpeek()
    swr_read = cread(tok)  # takes the refresh lock
    K["real_load_swr_stale_other"] = hdr(1, a=SWR_) + swr_peek + cread(other)
    K["real_load_swr_refresh"] = hdr(1, a=SWR_) + swr_peek + swr_read \
        + cstore("f", gen=gen_of(swr_read), token=tok, ttl=100000, stale=200000)
    r.call("DEL", lk)
    cstore("w", ttl=100000, stale=10)
    K["real_get_swr_fresh"] = hdr(0, a=SWR_) + cpeek()
    K["real_load_swr_fresh"] = hdr(1, a=SWR_) + cpeek()
    cstore("w", ttl=50)
    xpeek = cpeek()
    K["real_load_xfetch_keep"] = hdr(1, a=XFETCH_, b=RANDOM) + xpeek
    xread = cread(tok, "0", "2")
    K["real_load_xfetch_early"] = hdr(1, a=XFETCH_, b=RANDOM, d=8) + xpeek + xread \
        + cstore("f", gen=gen_of(xread), token=tok)
    r.call("SET", ek, "x")
    K["real_get_wrongtype"] = hdr(0, a=LOCK_) + cpeek()
    K["real_load_wrongtype"] = hdr(1, a=LOCK_) + cpeek()


def main():
    fams = set()
    for a in sys.argv[1:]:
        if a == "--capture":
            fams = set(seeds)
        elif a.startswith("--capture="):  # only these families' real_* seeds: cache,locks
            fams = set(a.split("=", 1)[1].split(","))
    real = capture() if fams else None
    for fam, items in seeds.items():
        d = os.path.join(HERE, "corpus", fam)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if fam in fams or not f.startswith("real_"):
                os.unlink(os.path.join(d, f))
        if fam in fams:
            items = dict(items, **real[fam])
        for name, data in items.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print("%s: %d seeds" % (fam, len(items)), file=sys.stderr)


if __name__ == "__main__":
    main()
