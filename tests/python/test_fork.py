"""After os.fork() the child opens its own connections instead of sharing the parent's."""
from __future__ import annotations

import os

import pytest

import redpat

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_child_uses_its_own_connection(client: redpat.Client) -> None:
    parent_id = client.execute_command("CLIENT", "ID")
    lock = client.lock("shared", timeout=5)
    r, w = os.pipe()
    go_r, go_w = os.pipe()  # the parent holds "shared" before the child tries it
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            child_id = client.execute_command("CLIENT", "ID")
            child_lock = client.lock("child-only", timeout=5)
            os.read(go_r, 1)
            ok = child_lock.acquire(blocking=False) and not lock.acquire(blocking=False)
            child_lock.release()
            os.write(w, b"%d %d" % (child_id, 1 if ok else 0))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    assert lock.acquire(blocking=False)  # the parent keeps working meanwhile
    os.write(go_w, b"x")
    _, status = os.waitpid(pid, 0)
    data = os.read(r, 100).split()
    for fd in (r, go_r, go_w):
        os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    child_id, ok = int(data[0]), int(data[1])
    assert child_id != parent_id
    assert ok == 1
    # The parent's own connection survived the child's exit and is still the same one.
    assert client.execute_command("CLIENT", "ID") == parent_id
    assert lock.owned()
    lock.release()


def test_many_forks_do_not_disturb_the_parent(client: redpat.Client) -> None:
    client.execute_command("SET", "n", "0")
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for _ in range(20):
                    with client.lock("incr", timeout=5, blocking_timeout=5):
                        n = int(client.execute_command("GET", "n"))
                        client.execute_command("SET", "n", n + 1)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert client.execute_command("GET", "n") == b"80"
