/* Status names and the caller-owned error record. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *rp_status_name(int code)
{
    switch (code) {
    case RP_OK: return "ok";
    case RP_EINVAL: return "invalid_argument";
    case RP_ENOMEM: return "no_memory";
    case RP_ETRANSPORT: return "transport";
    case RP_ETIMEOUT: return "timeout";
    case RP_EPROTOCOL: return "protocol";
    case RP_EREPLY: return "reply";
    case RP_ENOTOWNED: return "not_owned";
    case RP_ESTATE: return "state";
    case RP_ECANCELED: return "cancelled";
    case RP_ECALLBACK: return "callback";
    case RP_ELOST: return "lost";
    case RP_EAUTH: return "auth";
    default: return "unknown";
    }
}

void rp_error_clear(rp_error *err)
{
    if (err) {
        err->code = RP_OK;
        err->message[0] = '\0';
    }
}

int rp_error__set(rp_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

int rp_error__copy(rp_error *dst, const rp_error *src)
{
    if (dst && src && dst != src)
        memcpy(dst, src, sizeof *dst);
    return src ? src->code : RP_OK;
}
