/* fenced_demo URL
 *
 * Several worker processes share one fenced lock and write to one "storage". Worker 1
 * takes the lock first and then stalls for longer than the lock's TTL (think of a long GC
 * pause or a swapped-out VM). The lock expires, the other workers take it in turn and
 * write. When worker 1 wakes up it still believes it holds the lock and tries to write:
 * the storage refuses, because worker 1's fencing token is older than one it has already
 * seen.
 *
 * The storage is this parent process: it receives write requests from the workers over a
 * pipe, one at a time, checks each writer's fencing token with rp_fence_check and, when
 * the token is accepted, appends the write to a Redis list. Handling requests one at a time
 * is what makes "check the token, then write" safe here; a real storage does both in one
 * step (a transaction, or the same script).
 *
 * Exit status 0 when the story went as described, 1 otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <redpat/redpat.h>

#define WORKERS 4
#define SLOW_WORKER 1
#define TTL_MS 500
#define PAUSE_MS 1200 /* longer than the TTL */
#define WORK_MS 100
#define LOCK_NAME "demo-lock"
#define RESOURCE "demo-storage"
#define STORAGE_KEY "redpat-demo:storage"

enum kind { ACQUIRED, PAUSING, WRITE, RELEASED, NOT_OWNED, FAILED, DONE };

typedef struct msg {
    int32_t worker;
    int32_t kind;
    int64_t fence;
    char text[200];
} msg;

typedef struct verdict {
    int32_t accepted;
    int64_t highest;
} verdict;

static struct timespec started;

static double elapsed(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - started.tv_sec) +
           (double)(now.tv_nsec - started.tv_nsec) / 1e9;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void send_msg(int fd, int worker, int kind, int64_t fence, const char *text)
{
    msg m;
    memset(&m, 0, sizeof m);
    m.worker = worker;
    m.kind = kind;
    m.fence = fence;
    if (text != NULL) snprintf(m.text, sizeof m.text, "%s", text);
    if (write_all(fd, &m, sizeof m) != 0) _exit(2);
}

static rp_client *new_client(const char *url, rp_error *e)
{
    rp_client_options o = RP_CLIENT_OPTIONS_INIT;
    o.url = url;
    o.key_namespace = "redpat-demo";
    rp_client *c = NULL;
    return rp_client_new(&c, &o, e) == RP_OK ? c : NULL;
}

static void worker(const char *url, int id, int to_storage, int from_storage)
{
    rp_error e;
    rp_client *c = new_client(url, &e);
    rp_lock *l = NULL;
    rp_lock_options lo = RP_LOCK_OPTIONS_INIT;
    lo.ttl_ms = TTL_MS;
    lo.fenced = 1;
    if (c == NULL || rp_lock_new(&l, c, LOCK_NAME, strlen(LOCK_NAME), &lo, &e) != RP_OK) {
        send_msg(to_storage, id, FAILED, 0, e.message);
        send_msg(to_storage, id, DONE, 0, NULL);
        _exit(1);
    }
    rp_lock_acquire_options ao = RP_LOCK_ACQUIRE_OPTIONS_INIT;
    ao.wait_ms = 10000;
    rp_lock_acquisition got;
    int rc = rp_lock_acquire(l, &ao, &got, &e);
    if (rc != RP_OK || !got.acquired) {
        send_msg(to_storage, id, FAILED, 0, rc != RP_OK ? e.message : "lock busy for 10 s");
    } else {
        send_msg(to_storage, id, ACQUIRED, got.fence, NULL);
        if (id == SLOW_WORKER) {
            send_msg(to_storage, id, PAUSING, got.fence, NULL);
            sleep_ms(PAUSE_MS);
        } else {
            sleep_ms(WORK_MS);
        }
        /* Write to the storage with our fencing token, and wait for its answer. */
        char text[200];
        snprintf(text, sizeof text, "report written by worker %d under token %lld", id,
                 (long long)got.fence);
        send_msg(to_storage, id, WRITE, got.fence, text);
        verdict v;
        if (read_all(from_storage, &v, sizeof v) != 0) _exit(3);
        rc = rp_lock_release(l, &e);
        if (rc == RP_OK) send_msg(to_storage, id, RELEASED, got.fence, NULL);
        else if (rc == RP_ENOTOWNED) send_msg(to_storage, id, NOT_OWNED, got.fence, NULL);
        else send_msg(to_storage, id, FAILED, got.fence, e.message);
    }
    send_msg(to_storage, id, DONE, 0, NULL);
    rp_lock_free(l);
    rp_client_free(c);
    _exit(0);
}

/* The storage: check the writer's token, then append the write (or refuse it). */
static verdict store(rp_client *c, const msg *m, int *ok)
{
    verdict v = {0, 0};
    rp_fence_result fr;
    rp_error e;
    int rc = rp_fence_check(c, RESOURCE, strlen(RESOURCE), m->fence, &fr, &e);
    if (rc != RP_OK) {
        printf("[%5.2fs] storage: could not check worker %d's token: %s\n", elapsed(), m->worker,
               e.message);
        *ok = 0;
        return v;
    }
    v.accepted = fr.accepted;
    v.highest = fr.highest;
    if (!fr.accepted) {
        printf("[%5.2fs] storage: REFUSED the write from worker %d: its token %lld is older than "
               "token %lld, which the storage has already seen\n",
               elapsed(), m->worker, (long long)m->fence, (long long)fr.highest);
        return v;
    }
    const char *argv[] = {"RPUSH", STORAGE_KEY, m->text};
    rp_reply *reply = NULL;
    rc = rp_client_command(c, 3, argv, NULL, &reply, &e);
    rp_reply_free(reply);
    if (rc != RP_OK) {
        printf("[%5.2fs] storage: write failed: %s\n", elapsed(), e.message);
        *ok = 0;
        return v;
    }
    printf("[%5.2fs] storage: accepted the write from worker %d (token %lld)\n", elapsed(),
           m->worker, (long long)m->fence);
    return v;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : getenv("REDPAT_URL");
    if (url == NULL) {
        fprintf(stderr, "usage: fenced_demo redis://127.0.0.1:6379/0\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    clock_gettime(CLOCK_MONOTONIC, &started);

    rp_error e;
    rp_client *c = new_client(url, &e);
    if (c == NULL) {
        fprintf(stderr, "fenced_demo: %s\n", e.message);
        return 1;
    }
    const char *del[] = {"DEL", STORAGE_KEY};
    rp_reply *reply = NULL;
    if (rp_client_command(c, 2, del, NULL, &reply, &e) != RP_OK) {
        fprintf(stderr, "fenced_demo: cannot reach Redis at %s: %s\n", url, e.message);
        rp_client_free(c);
        return 1;
    }
    rp_reply_free(reply);

    printf("redpat fenced lock demo: %d workers share the lock \"%s\" (TTL %d ms) and write to "
           "one storage.\nWorker %d will stall for %d ms while holding the lock, longer than "
           "its TTL.\n\n",
           WORKERS, LOCK_NAME, TTL_MS, SLOW_WORKER, PAUSE_MS);

    int up[2];
    int down[WORKERS + 1][2];
    pid_t pids[WORKERS + 1];
    if (pipe(up) != 0) return 1;
    int first_fence_seen = 0;
    int ok = 1, done = 0, accepted = 0, refused = 0, slow_refused = 0, slow_not_owned = 0;
    int started_workers = 0;
    /* Worker 1 starts alone, so it is the first holder; the others start once it has the
     * lock. */
    for (int id = 1; id <= WORKERS; id++) {
        if (pipe(down[id]) != 0) return 1;
    }
    /* No connection may be shared with the children: they open their own. */
    rp_client_disconnect(c);
    fflush(NULL);
    for (int id = 1; id <= WORKERS && (id == 1 || first_fence_seen); id++) {
        pids[id] = fork();
        if (pids[id] < 0) return 1;
        if (pids[id] == 0) {
            close(up[0]);
            worker(url, id, up[1], down[id][0]);
        }
        started_workers++;
        while (id == 1 && !first_fence_seen) {
            msg m;
            if (read_all(up[0], &m, sizeof m) != 0) return 1;
            if (m.kind == ACQUIRED) {
                printf("[%5.2fs] worker %d: got the lock, fencing token %lld\n", elapsed(),
                       m.worker, (long long)m.fence);
                first_fence_seen = 1;
            } else if (m.kind == FAILED || m.kind == DONE) {
                printf("worker 1 failed: %s\n", m.text);
                return 1;
            }
        }
        if (id == 1)
            printf("[%5.2fs] workers 2..%d start and wait for the lock\n", elapsed(), WORKERS);
    }
    close(up[1]);

    while (done < started_workers) {
        msg m;
        if (read_all(up[0], &m, sizeof m) != 0) break;
        switch (m.kind) {
        case ACQUIRED:
            printf("[%5.2fs] worker %d: got the lock, fencing token %lld\n", elapsed(), m.worker,
                   (long long)m.fence);
            break;
        case PAUSING:
            printf("[%5.2fs] worker %d: stalls for %d ms while holding the lock...\n", elapsed(),
                   m.worker, PAUSE_MS);
            break;
        case WRITE: {
            if (m.worker == SLOW_WORKER)
                printf("[%5.2fs] worker %d: wakes up, still believes it holds the lock, and "
                       "writes with token %lld\n",
                       elapsed(), m.worker, (long long)m.fence);
            verdict v = store(c, &m, &ok);
            if (v.accepted) accepted++;
            else {
                refused++;
                if (m.worker == SLOW_WORKER) slow_refused = 1;
            }
            if (write_all(down[m.worker][1], &v, sizeof v) != 0) ok = 0;
            break;
        }
        case RELEASED:
            printf("[%5.2fs] worker %d: released the lock\n", elapsed(), m.worker);
            break;
        case NOT_OWNED:
            printf("[%5.2fs] worker %d: release reports \"not owned\": its lock expired during "
                   "the stall and others have held it since; nothing was deleted\n",
                   elapsed(), m.worker);
            if (m.worker == SLOW_WORKER) slow_not_owned = 1;
            break;
        case FAILED:
            printf("[%5.2fs] worker %d: error: %s\n", elapsed(), m.worker, m.text);
            ok = 0;
            break;
        case DONE: done++; break;
        }
    }
    for (int id = 1; id <= started_workers; id++) {
        int status;
        waitpid(pids[id], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = 0;
    }

    printf("\nWhat the storage holds (%s):\n", STORAGE_KEY);
    const char *lrange[] = {"LRANGE", STORAGE_KEY, "0", "-1"};
    reply = NULL;
    if (rp_client_command(c, 4, lrange, NULL, &reply, &e) == RP_OK &&
        reply->type == RP_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++)
            printf("  %zu. %s\n", i + 1, reply->element[i]->str);
    } else {
        ok = 0;
    }
    rp_reply_free(reply);
    rp_client_free(c);

    printf("\n%d writes accepted, %d refused.\n", accepted, refused);
    if (ok && slow_refused && slow_not_owned && accepted == WORKERS - 1) {
        printf("Worker %d lost the lock while it was stalled. Without fencing its late write "
               "would have\noverwritten newer data; with the fencing token the storage saw that "
               "a newer holder\nhad already written and refused it.\n",
               SLOW_WORKER);
        return 0;
    }
    printf("The demo did not go as expected (see above).\n");
    return 1;
}
