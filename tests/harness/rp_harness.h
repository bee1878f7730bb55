/* redpat C test harness: private redis-server processes on free loopback ports in
 * temporary directories, plus the small assertion and Redis helpers the C tests share.
 *
 * A server started here is registered for cleanup: it is stopped and its directory removed
 * at exit, and it is SIGKILLed if the test dies of a signal (including the watchdog alarm).
 * The server is also told to die with its parent (PR_SET_PDEATHSIG on Linux), so even a
 * test killed with SIGKILL leaves no server behind. Forked children of a test never run
 * this cleanup: only the process that started the server does. A test killed by a signal
 * kills its servers but leaves their (small) directories: removing a tree is not
 * async-signal-safe.
 *
 * Not thread-safe; single-threaded test programs (fork is fine). */
#ifndef RP_HARNESS_H
#define RP_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_hserver {
    pid_t pid;        /* > 0 while the process exists (running or stopped) */
    int port;
    int appendonly;   /* non-zero: --appendonly yes --appendfsync always */
    int paused;       /* SIGSTOPped by rp_hserver_pause */
    int slot;         /* harness-internal cleanup slot; -1 after destroy */
    char dir[256];    /* mkdtemp directory: --dir, redis.log, AOF files */
    char url[64];     /* redis://127.0.0.1:PORT/0 */
} rp_hserver;

/* Starts a server on a free port in a new temporary directory and waits until it answers
 * PING. Returns 0, or -1 with a message on stderr (nothing left running). */
int rp_hserver_start(rp_hserver *s, int appendonly);
/* Starts the process again on the same port and directory (after stop or kill); waits for
 * PING (an AOF server answers once it has loaded its data). 0 or -1. */
int rp_hserver_launch(rp_hserver *s);
/* stop + launch. */
int rp_hserver_restart(rp_hserver *s);
/* Graceful stop: SIGCONT (a stopped process cannot exit), SIGTERM, wait up to 10 s, then
 * SIGKILL. No-op when not running. */
void rp_hserver_stop(rp_hserver *s);
/* SIGKILL and reap. No-op when not running. */
void rp_hserver_kill(rp_hserver *s);
/* SIGSTOP / SIGCONT the server process. 0 or -1. */
int rp_hserver_pause(rp_hserver *s);
int rp_hserver_resume(rp_hserver *s);
/* Stops the server, removes its directory and unregisters it. Safe to call twice; a server
 * not destroyed by the test is destroyed at exit. */
void rp_hserver_destroy(rp_hserver *s);

/* A loopback TCP port that was free a moment ago (bound to port 0, then closed). */
int rp_harness_free_port(void);
/* Kills the whole test (and its servers) after seconds, with a message: a hang becomes a
 * failure instead of a stuck ctest. 0 disarms. */
void rp_harness_watchdog(unsigned seconds);
/* Monotonic clock. */
uint64_t rp_harness_now_ns(void);
uint64_t rp_harness_now_ms(void);
void rp_harness_sleep_ms(uint64_t ms);

/* --- Redis helpers over a private hiredis connection (tests' side channel). --- */

/* Connects to the server with a read/write timeout; NULL on failure (message on stderr). */
redisContext *rp_hserver_connect(const rp_hserver *s, int timeout_ms);
/* Runs a command; returns the reply (freeReplyObject) or NULL (connection error). */
redisReply *rp_hcmd(redisContext *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Integer field "name:value" of INFO section; -1 when absent or on error. */
long long rp_hinfo_ll(redisContext *c, const char *section, const char *name);
/* calls= of cmdstat_<command> from INFO commandstats (0 when the command never ran). */
long long rp_hcmdstat_calls(redisContext *c, const char *command);

/* --- Assertions. A failure prints file:line and the message, then exits 1 (_exit in a
 * forked child, so the child never runs the parent's cleanup). --- */
void rp_harness_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));
#define RP_CHECK(cond, ...)                                                  \
    do {                                                                     \
        if (!(cond)) rp_harness_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
    } while (0)

/* Non-zero in a forked child of the process that started the servers (that process, set
 * by the first rp_hserver_start or rp_harness_watchdog, is the only one that cleans up). */
int rp_harness_in_child(void);

#ifdef __cplusplus
}
#endif
#endif
