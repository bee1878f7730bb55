/* redpat — production-grade Redis patterns, written once in C.
 *
 * Thread safety: a handle (client, lock, op) is used by one thread at a time; separate
 * handles are independent, and redpat has no global mutable state.
 * Ownership: what a function gives through **out belongs to the caller and has a *_free;
 * returned pointers are borrowed, for as long as each header says. */
#ifndef REDPAT_H
#define REDPAT_H

#define RP_VERSION_MAJOR 0
#define RP_VERSION_MINOR 1
#define RP_VERSION_PATCH 0
#define RP_VERSION "0.1.0"

#include "alloc.h"
#include "cache.h"
#include "client.h"
#include "describe.h"
#include "error.h"
#include "drive.h"
#include "lock.h"
#include "lock_using.h"
#include "op.h"
#include "pubsub.h"
#include "ratelimit.h"
#include "reply.h"
#include "transport.h"

#endif
