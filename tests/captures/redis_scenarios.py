"""Redis scenarios for capture.py: redis-cli, inline commands and redis-py (RESP2 and
RESP3, pipelines, MULTI/EXEC, BRPOP, client-side caching, pub/sub)."""

import os
import socket
import subprocess

import redis

from recorder import BIG, BUSY, REST, WAIT, in_thread


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def redis_cli_pipe(rec, port):
    cmds = []
    for i in range(120):
        cmds += [resp("SET", f"k{i}", "v" * (i % 40)), resp("INCR", "n"), resp("LPUSH", "l", i)]
    cmds.append(resp("LRANGE", "l", 0, -1))
    subprocess.run(["redis-cli", "-p", str(rec.port), "--pipe"], input=b"".join(cmds),
                   check=True, capture_output=True, timeout=WAIT)
    rec.mark(REST)


def redis_inline(rec, port):
    """Inline commands (telnet, nc): a line each, an empty line gets no reply."""
    with socket.create_connection(("127.0.0.1", rec.port)) as s:
        s.sendall(b"PING\r\nSET inline \"a b\"\r\n\r\nGET inline\nEXISTS inline nosuch\r\n")
        want = b"+PONG\r\n+OK\r\n$3\r\na b\r\n:1\r\n"
        got = b""
        while len(got) < len(want):
            got += s.recv(4096)
        assert got == want, got
        rec.mark(REST)
        s.sendall(b"SUBSCRIBE x y\r\n")
        rec.wait_saw(b"s", b":2\r\n")
        rec.mark(BUSY)  # subscribed: waiting for messages


def brpop(rec, client, direct, timeout, push, meanwhile=None):
    got = {}
    t = in_thread(lambda: got.update(v=client.brpop("jobs", timeout=timeout)))
    rec.wait_saw(b"c", b"BRPOP")
    rec.mark(REST)  # blocked: Redis takes nothing until it answers; closing unblocks it
    if meanwhile:
        meanwhile()
        rec.mark(REST)  # a push is no reply: still blocked
    if push:
        direct.lpush("jobs", "task")
    t.join(WAIT)
    assert (tuple(got["v"]) if push else got["v"]) == ((b"jobs", b"task") if push else None), got
    rec.mark(REST)


def redis_common(rec, r, direct):
    r.ping()
    rec.mark(REST)
    big = os.urandom(BIG)
    r.set("big", big)
    assert r.get("big") == big
    rec.mark(REST)
    p = r.pipeline(transaction=False)
    for i in range(40):
        p.set(f"p{i}", i).get(f"p{i}")
    p.execute()
    rec.mark(REST)
    r.pipeline(transaction=True).incr("t").lpush("tl", 1, 2).lrange("tl", 0, -1).execute()
    rec.mark(REST)
    # A command that fails inside MULTI: EXEC still runs; the error is one of its replies.
    r.pipeline(transaction=True).set("s", "x").incr("s").execute(raise_on_error=False)
    rec.mark(REST)
    r.hset("h", mapping={"a": 1, "b": 2})
    r.hgetall("h")
    r.zadd("z", {"m": 1.5})
    r.zscore("z", "m")
    r.sadd("set", "a", "b")
    r.smembers("set")
    rec.mark(REST)
    values = {f"m{i}": os.urandom(3000 * i) for i in range(4)}
    r.mset(values)
    assert r.mget(list(values)) == list(values.values())
    rec.mark(REST)
    brpop(rec, r, direct, 5, push=True)
    brpop(rec, r, direct, 0.2, push=False)


def one_connection(rec, protocol):
    """A client whose commands and pipelines all use the one recorded connection."""
    pool = redis.BlockingConnectionPool(port=rec.port, protocol=protocol, max_connections=1)
    return redis.Redis(connection_pool=pool)


def redis_py_resp2(rec, port):
    r = one_connection(rec, 2)
    redis_common(rec, r, redis.Redis(port=port))
    r.close()


def redis_py_resp3(rec, port):
    r = one_connection(rec, 3)
    direct = redis.Redis(port=port)
    redis_common(rec, r, direct)
    # Client-side caching: invalidation pushes arrive while nothing is outstanding, and
    # while a BRPOP is: they are not its reply.
    r.execute_command("CLIENT", "TRACKING", "ON")
    r.get("tracked")
    rec.mark(REST)
    direct.set("tracked", "changed")
    rec.wait_saw(b"s", b"invalidate")
    rec.mark(REST)
    r.get("tracked")
    rec.mark(REST)

    def invalidate():
        direct.set("tracked", "again")
        rec.wait_saw(b"s", b"invalidate")

    brpop(rec, r, direct, 5, push=True, meanwhile=invalidate)
    r.close()


def expect(ps, kind, n=1):
    for _ in range(n):
        msg = ps.get_message(timeout=WAIT)
        while msg is None:
            msg = ps.get_message(timeout=WAIT)
        assert msg["type"] == kind, msg


def pubsub(rec, port, protocol):
    """Subscribed, a connection waits for messages: busy until the last unsubscribe."""
    ps = redis.Redis(port=rec.port, protocol=protocol).pubsub()
    direct = redis.Redis(port=port)
    ps.subscribe("a", "b")
    expect(ps, "subscribe", 2)
    rec.mark(BUSY)
    ps.psubscribe("p*")
    expect(ps, "psubscribe")
    rec.mark(BUSY)
    direct.publish("a", "hello")
    direct.publish("p1", "world")
    direct.publish("b", os.urandom(BIG))
    expect(ps, "message")
    expect(ps, "pmessage")
    expect(ps, "message")
    rec.mark(BUSY)
    ps.ping()
    expect(ps, "pong")
    rec.mark(BUSY)
    ps.ssubscribe("s1")
    expect(ps, "ssubscribe")
    direct.spublish("s1", "sharded")
    expect(ps, "smessage")
    rec.mark(BUSY)
    ps.unsubscribe("a")
    expect(ps, "unsubscribe")
    rec.mark(BUSY)
    ps.punsubscribe()
    expect(ps, "punsubscribe")
    rec.mark(BUSY)
    ps.sunsubscribe("s1")
    expect(ps, "sunsubscribe")
    ps.unsubscribe()
    expect(ps, "unsubscribe")
    rec.mark(REST)
    ps.close()


def redis_pubsub_resp2(rec, port):
    pubsub(rec, port, 2)


def redis_pubsub_resp3(rec, port):
    pubsub(rec, port, 3)


REDIS = [redis_cli_pipe, redis_inline, redis_py_resp2, redis_py_resp3, redis_pubsub_resp2,
         redis_pubsub_resp3]
