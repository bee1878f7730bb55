/* Scripts vanish under a lock holder: SCRIPT FLUSH, or a server restart (appendonly, so
 * the lock key itself survives), between acquire and release. Release, extend, fenced
 * acquire and fence check must still work: EVALSHA gets NOSCRIPT, the core falls back to
 * EVAL once and carries on. After a restart the client's old connection is dead: the next
 * call works over a fresh one. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lock_test_util.h"

static redisContext *side;

static long long key_exists(const char *name)
{
    redisReply *r = rp_hcmd(side, "EXISTS %s:lock:{%s}", LT_NS, name);
    RP_CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER, "EXISTS failed");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void script_flush(void)
{
    redisReply *r = rp_hcmd(side, "SCRIPT FLUSH");
    RP_CHECK(r != NULL && r->type == REDIS_REPLY_STATUS, "SCRIPT FLUSH failed");
    freeReplyObject(r);
}

static void acquire_ok(rp_lock *l, int64_t *fence)
{
    rp_lock_acquisition res;
    rp_error e;
    int rc = rp_lock_acquire(l, NULL, &res, &e);
    RP_CHECK(rc == RP_OK && res.acquired == 1, "acquire: %s %s", rp_status_name(rc), e.message);
    if (fence != NULL) *fence = res.fence;
}

static void flush_cases(rp_client *c)
{
    rp_error e;
    /* Plain lock: release after SCRIPT FLUSH, one EVALSHA (NOSCRIPT) then one EVAL. The
     * first release teaches the client that the server has the script (a server it knows
     * nothing of gets EVAL at once). */
    rp_lock *l = lt_lock(c, "flush-plain", 30000, 0);
    acquire_ok(l, NULL);
    RP_CHECK(rp_lock_release(l, &e) == RP_OK, "first release");
    acquire_ok(l, NULL);
    script_flush();
    long long evalsha0 = rp_hcmdstat_calls(side, "evalsha");
    long long eval0 = rp_hcmdstat_calls(side, "eval");
    int rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "release after SCRIPT FLUSH: %s %s", rp_status_name(rc), e.message);
    RP_CHECK(key_exists("flush-plain") == 0, "release after SCRIPT FLUSH left the key");
    long long evalsha1 = rp_hcmdstat_calls(side, "evalsha");
    long long eval1 = rp_hcmdstat_calls(side, "eval");
    RP_CHECK(evalsha1 - evalsha0 == 1 && eval1 - eval0 == 1,
             "expected 1 EVALSHA + 1 EVAL fallback, saw %lld + %lld", evalsha1 - evalsha0,
             eval1 - eval0);
    /* The script is cached again: the next release is EVALSHA alone. */
    acquire_ok(l, NULL);
    rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "second release: %s", rp_status_name(rc));
    RP_CHECK(rp_hcmdstat_calls(side, "eval") == eval1, "EVAL used although the script is cached");
    rp_lock_free(l);

    /* Fenced lock: every script of the family after a flush. */
    l = lt_lock(c, "flush-fenced", 30000, 1);
    int64_t f1 = 0, f2 = 0;
    acquire_ok(l, &f1);
    RP_CHECK(f1 > 0, "no fence");
    script_flush();
    rc = rp_lock_extend(l, 10000, 0, &e);
    RP_CHECK(rc == RP_OK, "extend after SCRIPT FLUSH: %s %s", rp_status_name(rc), e.message);
    script_flush();
    rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "fenced release after SCRIPT FLUSH: %s %s", rp_status_name(rc),
             e.message);
    RP_CHECK(key_exists("flush-fenced") == 0, "fenced release left the key");
    script_flush();
    acquire_ok(l, &f2);
    RP_CHECK(f2 > f1, "fence did not grow across SCRIPT FLUSH (%lld then %lld)", (long long)f1,
             (long long)f2);
    script_flush();
    rp_fence_result fr;
    rc = rp_fence_check(c, "flush-res", 9, f2, &fr, &e);
    RP_CHECK(rc == RP_OK && fr.accepted == 1, "fence check after SCRIPT FLUSH: %s %s",
             rp_status_name(rc), e.message);
    rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "release: %s", rp_status_name(rc));
    rp_lock_free(l);
}

static void restart_server(rp_hserver *srv)
{
    redisFree(side);
    RP_CHECK(rp_hserver_restart(srv) == 0, "restart failed");
    side = rp_hserver_connect(srv, 2000);
    RP_CHECK(side != NULL, "side connection after restart");
}

static void restart_cases(rp_hserver *srv, rp_client *c)
{
    rp_error e;
    /* 1. Release is the first call after the restart, over a connection the client opens
     *    afresh (rp_client_disconnect drops the dead one). */
    rp_lock *l = lt_lock(c, "restart-1", 60000, 1);
    int64_t f1 = 0;
    acquire_ok(l, &f1);
    restart_server(srv);
    RP_CHECK(key_exists("restart-1") == 1, "lock key did not survive the restart (AOF)");
    rp_client_disconnect(c);
    int rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "release after restart: %s %s", rp_status_name(rc), e.message);
    RP_CHECK(key_exists("restart-1") == 0, "release after restart left the key");

    /* The fencing counter persisted too: the next token is still higher. */
    int64_t f2 = 0;
    acquire_ok(l, &f2);
    RP_CHECK(f2 > f1, "fence went back after restart (%lld then %lld)", (long long)f1,
             (long long)f2);

    /* 2. No hint from the caller: the client finds its connection dead by itself. The first
     *    call may report the broken connection (a clean RP_ETRANSPORT); the next one must
     *    work, and the release after it too. */
    restart_server(srv);
    RP_CHECK(key_exists("restart-1") == 1, "lock key did not survive the second restart");
    int owned = 0;
    rc = rp_lock_owned(l, &owned, &e);
    if (rc == RP_ETRANSPORT) rc = rp_lock_owned(l, &owned, &e);
    RP_CHECK(rc == RP_OK && owned == 1, "owned after restart: %s (%d) %s", rp_status_name(rc),
             owned, e.message);
    rc = rp_lock_release(l, &e);
    RP_CHECK(rc == RP_OK, "release after second restart: %s %s", rp_status_name(rc), e.message);
    RP_CHECK(key_exists("restart-1") == 0, "release after second restart left the key");
    rp_lock_free(l);
}

int main(void)
{
    rp_harness_watchdog(90);
    rp_hserver srv;
    RP_CHECK(rp_hserver_start(&srv, 1) == 0, "cannot start redis-server");
    side = rp_hserver_connect(&srv, 2000);
    RP_CHECK(side != NULL, "side connection");
    rp_client *c = lt_client(srv.url, 2000);

    flush_cases(c);
    restart_cases(&srv, c);

    rp_client_free(c);
    redisFree(side);
    printf("test_lock_scripts: SCRIPT FLUSH and restart between acquire and release: ok\n");
    rp_hserver_destroy(&srv);
    return 0;
}
