/* Randomness from the OS CSPRNG: owner tokens must be unguessable, and jitter needs no
 * seeded state (there is no global state to seed). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

#include "internal.h"

static int read_urandom(unsigned char *out, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return RP_ETRANSPORT;
    while (len > 0) {
        ssize_t n = read(fd, out, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return RP_ETRANSPORT;
        }
        out += n;
        len -= (size_t)n;
    }
    close(fd);
    return RP_OK;
}

int rp_random__bytes(void *out, size_t len)
{
    unsigned char *p = out;
#if defined(__linux__)
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return read_urandom(p, len);
        p += n;
        len -= (size_t)n;
    }
    return RP_OK;
#else
    return read_urandom(p, len);
#endif
}

int64_t rp_random__between(int64_t lo, int64_t hi)
{
    uint64_t r, span;
    if (hi <= lo)
        return lo;
    if (rp_random__bytes(&r, sizeof r) != RP_OK)
        return hi;
    span = (uint64_t)(hi - lo) + 1u;
    return lo + (int64_t)(r % span);
}
