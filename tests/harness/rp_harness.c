/* redpat C test harness; see rp_harness.h. */
#define _GNU_SOURCE
#include "rp_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MAX_SERVERS 16

/* Test-process state (the library has none; a test harness may). The cleanup table keeps
 * its own copy of each server's pid and directory, because the caller's rp_hserver may be
 * gone (a local of main) when atexit runs. The signal handler only reads pids and calls
 * kill(), both async-signal-safe. */
static struct slot {
    volatile pid_t pid;
    int used;
    char dir[256];
} slots[MAX_SERVERS];
static volatile pid_t owner_pid;
static int cleanup_installed;

static void rm_dir(const char *dir);

static void reap_pid(pid_t pid, int wait_ms);

static void cleanup_at_exit(void)
{
    if (owner_pid == 0 || getpid() != owner_pid) return;
    for (size_t i = 0; i < MAX_SERVERS; i++) {
        if (!slots[i].used) continue;
        if (slots[i].pid > 0) {
            kill(slots[i].pid, SIGCONT);
            kill(slots[i].pid, SIGTERM);
            reap_pid(slots[i].pid, 10000);
            slots[i].pid = 0;
        }
        if (slots[i].dir[0] != '\0') rm_dir(slots[i].dir);
        slots[i].used = 0;
    }
}

static void on_fatal_signal(int sig)
{
    if (owner_pid != 0 && getpid() == owner_pid) {
        if (sig == SIGALRM) {
            static const char msg[] = "rp_harness: watchdog expired, test killed\n";
            ssize_t w = write(2, msg, sizeof msg - 1);
            (void)w;
        }
        for (size_t i = 0; i < MAX_SERVERS; i++) {
            pid_t pid = slots[i].pid;
            if (slots[i].used && pid > 0) kill(pid, SIGKILL);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_cleanup(void)
{
    if (owner_pid == 0) owner_pid = getpid();
    if (cleanup_installed) return;
    cleanup_installed = 1;
    atexit(cleanup_at_exit);
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT,
                               SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGALRM};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = (int)SA_RESETHAND;
        sigaction(sigs[i], &sa, NULL);
    }
    /* A reader that went away must give EPIPE, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
}

/* Claims a slot for s (its directory) and returns 0, or -1 when the table is full. */
static int register_server(rp_hserver *s)
{
    for (int i = 0; i < MAX_SERVERS; i++) {
        if (!slots[i].used) {
            slots[i].used = 1;
            slots[i].pid = 0;
            snprintf(slots[i].dir, sizeof slots[i].dir, "%s", s->dir);
            s->slot = i;
            return 0;
        }
    }
    fprintf(stderr, "rp_harness: more than %d servers\n", MAX_SERVERS);
    return -1;
}

/* Mirrors s->pid into its slot. */
static void sync_slot(const rp_hserver *s)
{
    if (s->slot >= 0 && s->slot < MAX_SERVERS && slots[s->slot].used)
        slots[s->slot].pid = s->pid;
}

static void unregister_server(rp_hserver *s)
{
    if (s->slot >= 0 && s->slot < MAX_SERVERS) {
        slots[s->slot].used = 0;
        slots[s->slot].pid = 0;
        slots[s->slot].dir[0] = '\0';
    }
    s->slot = -1;
}

int rp_harness_in_child(void)
{
    return owner_pid != 0 && getpid() != owner_pid;
}

void rp_harness_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    if (rp_harness_in_child()) _exit(1);
    exit(1);
}

uint64_t rp_harness_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rp_harness_now_ms(void)
{
    return rp_harness_now_ns() / 1000000u;
}

void rp_harness_sleep_ms(uint64_t ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)((ms % 1000u) * 1000000u);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void rp_harness_watchdog(unsigned seconds)
{
    install_cleanup();
    alarm(seconds);
}

int rp_harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* One PING over a fresh socket: 1 when the answer is +PONG. */
static int ping_once(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        static const char ping[] = "PING\r\n";
        char buf[16];
        if (send(fd, ping, sizeof ping - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof ping - 1)) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            ok = n >= 5 && memcmp(buf, "+PONG", 5) == 0;
        }
    }
    close(fd);
    return ok;
}

/* The server binary: REDPAT_REDIS_SERVER, else redis-server from PATH. */
static const char *server_binary(void)
{
    const char *bin = getenv("REDPAT_REDIS_SERVER");
    return bin == NULL || *bin == '\0' ? "redis-server" : bin;
}

/* The binary's major version, from `BIN --version` ("Redis server v=6.2.14 ..."); asked
 * once per test process (before any fork). 7 when it cannot tell: the usual server. */
static int server_major(void)
{
    static int major = 0;
    if (major == 0) {
        const char *bin = server_binary();
        char cmd[4096], line[256];
        FILE *f;
        major = 7;
        if (strchr(bin, '\'') == NULL &&
            snprintf(cmd, sizeof cmd, "'%s' --version 2>/dev/null", bin) < (int)sizeof cmd &&
            (f = popen(cmd, "r")) != NULL) {
            const char *v;
            if (fgets(line, sizeof line, f) && (v = strstr(line, "v=")) != NULL && atoi(v + 2) > 0)
                major = atoi(v + 2);
            pclose(f);
        }
    }
    return major;
}

static void exec_server(const rp_hserver *s, int major)
{
#ifdef __linux__
    /* Die with the test, even if it is SIGKILLed and runs no cleanup. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (getppid() != owner_pid) _exit(127);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) close(null);
    }
    if (chdir(s->dir) != 0) _exit(127);
    /* The test's signal dispositions must not reach the server. */
    signal(SIGPIPE, SIG_DFL);
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    const char *bin = server_binary();
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--logfile";
    argv[n++] = "redis.log";
    if (major >= 7) { /* 7.0 refuses DEBUG unless enabled; 6.2 has no such option */
        argv[n++] = "--enable-debug-command";
        argv[n++] = "local";
    }
    argv[n++] = "--appendonly";
    argv[n++] = s->appendonly ? "yes" : "no";
    if (s->appendonly) {
        argv[n++] = "--appendfsync";
        argv[n++] = "always";
    }
    argv[n] = NULL;
    execvp(bin, (char *const *)argv);
    _exit(127);
}

int rp_hserver_launch(rp_hserver *s)
{
    install_cleanup();
    if (s->pid > 0) return 0;
    if (s->slot < 0) {
        fprintf(stderr, "rp_harness: launch of a destroyed server\n");
        return -1;
    }
    int major = server_major();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rp_harness: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) exec_server(s, major);
    s->pid = pid;
    s->paused = 0;
    sync_slot(s);
    uint64_t deadline = rp_harness_now_ms() + 15000;
    while (rp_harness_now_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            sync_slot(s);
            fprintf(stderr, "rp_harness: redis-server exited at start (port %d); see %s/redis.log\n",
                    s->port, s->dir);
            return -1;
        }
        if (ping_once(s->port)) return 0;
        rp_harness_sleep_ms(10);
    }
    fprintf(stderr, "rp_harness: redis-server did not answer on port %d\n", s->port);
    rp_hserver_kill(s);
    return -1;
}

int rp_hserver_start(rp_hserver *s, int appendonly)
{
    install_cleanup();
    memset(s, 0, sizeof *s);
    s->slot = -1;
    s->appendonly = appendonly;
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || *tmp == '\0') tmp = "/tmp";
    snprintf(s->dir, sizeof s->dir, "%s/redpat-redis-XXXXXX", tmp);
    if (mkdtemp(s->dir) == NULL) {
        fprintf(stderr, "rp_harness: mkdtemp %s: %s\n", s->dir, strerror(errno));
        s->dir[0] = '\0';
        return -1;
    }
    if (register_server(s) != 0) {
        rm_dir(s->dir);
        s->dir[0] = '\0';
        return -1;
    }
    /* The free port may be taken again before redis binds it: try a few. */
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = rp_harness_free_port();
        if (s->port <= 0) continue;
        snprintf(s->url, sizeof s->url, "redis://127.0.0.1:%d/0", s->port);
        if (rp_hserver_launch(s) == 0) return 0;
    }
    rp_hserver_destroy(s);
    return -1;
}

/* Waits up to wait_ms for pid to exit, then SIGKILLs and reaps it. */
static void reap_pid(pid_t pid, int wait_ms)
{
    uint64_t deadline = rp_harness_now_ms() + (uint64_t)wait_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) return;
        if (rp_harness_now_ms() >= deadline) break;
        rp_harness_sleep_ms(5);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

void rp_hserver_stop(rp_hserver *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGCONT);
    kill(s->pid, SIGTERM);
    reap_pid(s->pid, 10000);
    s->pid = 0;
    s->paused = 0;
    sync_slot(s);
}

void rp_hserver_kill(rp_hserver *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    reap_pid(s->pid, 10000);
    s->pid = 0;
    s->paused = 0;
    sync_slot(s);
}

int rp_hserver_restart(rp_hserver *s)
{
    rp_hserver_stop(s);
    return rp_hserver_launch(s);
}

int rp_hserver_pause(rp_hserver *s)
{
    if (s->pid <= 0 || kill(s->pid, SIGSTOP) != 0) return -1;
    /* Wait until it is really stopped, so the caller's next step sees a frozen server. */
    int status;
    if (waitpid(s->pid, &status, WUNTRACED) != s->pid || !WIFSTOPPED(status)) return -1;
    s->paused = 1;
    return 0;
}

int rp_hserver_resume(rp_hserver *s)
{
    if (s->pid <= 0 || kill(s->pid, SIGCONT) != 0) return -1;
    s->paused = 0;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_dir(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void rp_hserver_destroy(rp_hserver *s)
{
    if (rp_harness_in_child()) return;
    rp_hserver_stop(s);
    if (s->dir[0] != '\0') {
        rm_dir(s->dir);
        s->dir[0] = '\0';
    }
    unregister_server(s);
}

redisContext *rp_hserver_connect(const rp_hserver *s, int timeout_ms)
{
    struct timeval tv;
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "rp_harness: connect to port %d: %s\n", s->port,
                c != NULL ? c->errstr : "out of memory");
        if (c != NULL) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

redisReply *rp_hcmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    void *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return (redisReply *)r;
}

/* Finds "name:" at a line start in text and parses the integer after it. */
static long long info_value(const char *text, const char *name, const char *after)
{
    size_t nlen = strlen(name);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            if (after != NULL) {
                v = strstr(v, after);
                if (v == NULL) return -1;
                v += strlen(after);
            }
            return strtoll(v, NULL, 10);
        }
        p = strchr(p, '\n');
        if (p != NULL) p++;
    }
    return -1;
}

long long rp_hinfo_ll(redisContext *c, const char *section, const char *name)
{
    redisReply *r = rp_hcmd(c, "INFO %s", section);
    if (r == NULL) return -1;
    long long v = -1;
    if (r->type == REDIS_REPLY_STRING) v = info_value(r->str, name, NULL);
    freeReplyObject(r);
    return v;
}

long long rp_hcmdstat_calls(redisContext *c, const char *command)
{
    redisReply *r = rp_hcmd(c, "INFO commandstats");
    if (r == NULL) return -1;
    long long v = -1;
    if (r->type == REDIS_REPLY_STRING) {
        char name[128];
        snprintf(name, sizeof name, "cmdstat_%s", command);
        v = info_value(r->str, name, "calls=");
        if (v < 0) v = 0;
    }
    freeReplyObject(r);
    return v;
}
