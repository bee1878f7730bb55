"""Runs the shared matrix (tests/matrix/*.json) through redpat.asyncio: Client, Lock and
RateLimiter with async/await (the core's ops over asyncio streams). Prints
`matrix[python-asyncio]: N passed, F failed, S skipped`; exits non-zero on any failure.
Uses REDPAT_TEST_URL, or starts a private redis-server. Arguments: directories of matrix
files (default tests/matrix), and/or a filter: run only cases whose name contains it."""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Dict, List, Optional

import redpat
import redpat.asyncio as rpa
from matrix_common import (CaseFailed, Driver, as_bytes, decision_fields, limiter_kwargs, main,
                           seconds)


class AsyncDriver(Driver):
    frontend = "python-asyncio"

    def __init__(self) -> None:
        self.client: Optional[rpa.Client] = None
        self.limiters: Dict[str, rpa.RateLimiter] = {}
        self.locks: Dict[str, rpa.Lock] = {}

    async def open(self, url: str, namespace: str) -> None:
        self.client = rpa.Client(url, namespace=namespace)
        self.locks = {}
        self.limiters = {}

    async def close(self) -> None:
        assert self.client is not None
        await self.client.close()
        self.client = None
        self.locks = {}
        self.limiters = {}

    async def command(self, argv: List[bytes]) -> Any:
        assert self.client is not None
        try:
            return await self.client.execute_command(*argv)
        except redpat.ResponseError as exc:
            return exc

    async def sleep(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000.0)

    def token_of(self, label: str) -> Optional[bytes]:
        return self.locks[label].token

    def ops(self) -> Dict[str, Any]:
        return {
            "lock.new": self.lock_new,
            "lock.acquire": self.lock_acquire,
            "lock.release": self.lock_release,
            "lock.extend": self.lock_extend,
            "lock.locked": self.lock_locked,
            "lock.owned": self.lock_owned,
            "fence.check": self.fence_check,
            "ratelimit.new": self.ratelimit_new,
            "ratelimit.check": self.ratelimit_check,
            "ratelimit.multi": self.ratelimit_multi,
            "ratelimit.batch": self.ratelimit_batch,
            "ratelimit.reset": self.ratelimit_reset,
        }

    async def lock_new(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        assert self.client is not None
        kw: Dict[str, Any] = {}
        if "ttl" in args:
            kw["timeout"] = seconds(args["ttl"])
        if "fenced" in args:
            kw["fenced"] = args["fenced"]
        self.locks[step["as"]] = self.client.lock(as_bytes(args["name"]), **kw)
        return {}

    async def lock_acquire(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        lock = self.locks[step["lock"]]
        wait = args.get("wait", 0)
        kw: Dict[str, Any] = {"blocking": wait != 0}
        if wait != 0:
            kw["blocking_timeout"] = seconds(wait)
        if "retry_min" in args:
            kw["retry_min"] = seconds(args["retry_min"])
        if "retry_max" in args:
            kw["retry_max"] = seconds(args["retry_max"])
        if "token" in args:
            kw["token"] = as_bytes(args["token"])
        acquired = await lock.acquire(**kw)
        return {"acquired": acquired, "fence": lock.fence if acquired else 0}

    async def lock_release(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        await self.locks[step["lock"]].release()
        return {"ok": True}

    async def lock_extend(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        ok = await self.locks[step["lock"]].extend(seconds(args["ms"]),
                                             replace_ttl=args.get("replace", False))
        return {"ok": ok}

    async def lock_locked(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        return {"value": await self.locks[step["lock"]].locked()}

    async def lock_owned(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        return {"value": await self.locks[step["lock"]].owned()}

    async def fence_check(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        assert self.client is not None
        r = await self.client.fence_check(as_bytes(args["resource"]), args["token"])
        return {"accepted": r.accepted, "highest": r.highest}


    def limiter(self, label: Any) -> rpa.RateLimiter:
        if label not in self.limiters:
            raise CaseFailed("unknown limiter label %r" % (label,))
        return self.limiters[label]

    async def ratelimit_new(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        assert self.client is not None
        self.limiters[step["as"]] = self.client.ratelimiter(args["name"], **limiter_kwargs(args))
        return {}

    async def ratelimit_check(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        d = await self.limiter(step["limiter"]).check(as_bytes(args["subject"]), args.get("cost", 1))
        return decision_fields(d)

    async def ratelimit_multi(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        assert self.client is not None
        limiters = [self.limiter(label) for label in step["limiters"]]
        d = await self.client.ratelimit_multi(limiters, as_bytes(args["subject"]),
                                        args.get("cost", 1))
        return decision_fields(d, multi=True)

    async def ratelimit_batch(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        ds = await self.limiter(step["limiter"]).batch([as_bytes(s) for s in args["subjects"]],
                                                 args.get("costs"))
        return {"allowed": [d.allowed for d in ds], "remaining": [d.remaining for d in ds]}

    async def ratelimit_reset(self, args: Dict[str, Any], step: Dict[str, Any]) -> Dict[str, Any]:
        await self.limiter(step["limiter"]).reset(as_bytes(args["subject"]))
        return {"ok": True}


if __name__ == "__main__":
    sys.exit(main(AsyncDriver()))
