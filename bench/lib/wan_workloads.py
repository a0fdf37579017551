#!/usr/bin/env python3
"""Connection workloads of the WAN benchmark, through one chain (run with the .venv Python:
psycopg 3, redis-py). Prints one JSON object.

  check  --plan F --chain C            wait until Redis and PostgreSQL answer through C
  pg     --plan F --chain C --user U   new connection + SELECT 1 + close, n times (U: scram|trust)
  redis  --plan F --chain C            new connection + PING + close, n times
  set64k --plan F --chain C            redis-benchmark: 64 KiB SETs, MiB/s
"""
import argparse
import json
import subprocess
import sys
import time

import psycopg
import redis

import wan_names  # noqa: F401  (*.bench.test -> 127.0.0.1)
import wan_plan

# 64 KiB SETs: 4 connections, 32 pipelined each: 2 MiB outstanding per connection, within the
# link's default window (6 MiB), so the chain's own buffering decides how close it gets.
SET_CLIENTS, SET_PIPELINE, SET_SIZE = 4, 32, 65536


def pg_once(params):
    t0 = time.perf_counter()
    with psycopg.connect(autocommit=True, **params) as conn:
        if conn.execute("select 1").fetchone() != (1,):
            raise RuntimeError("SELECT 1 returned something else")
    return time.perf_counter() - t0


def redis_once(kwargs):
    t0 = time.perf_counter()
    r = redis.Redis(**kwargs)
    try:
        if r.ping() is not True:
            raise RuntimeError("PING returned something else")
    finally:
        r.close()
    return time.perf_counter() - t0


def samples(fn, arg, n):
    return {"samples_ms": [fn(arg) * 1000 for _ in range(n)]}


def set64k(plan, name, n):
    cmd = ["redis-benchmark", *wan_plan.redis_benchmark_args(plan, name), "--csv", "-t", "set",
           "-d", str(SET_SIZE), "-c", str(SET_CLIENTS), "-P", str(SET_PIPELINE), "-n", str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells[0] == "SET":
            rps = float(cells[1])
            return {"rps": rps, "mib_s": rps * SET_SIZE / (1 << 20)}
    raise RuntimeError(f"no SET line from redis-benchmark: {out.stdout} {out.stderr}")


def check(plan, name, timeout):
    """Polls until one PING and one SELECT 1 (each user the chain serves) go through."""
    c = wan_plan.chain(plan, name)
    users = ["scram"] if c.get("login") else ["scram", "trust"]
    probes = [(redis_once, wan_plan.redis_kwargs(plan, name))]
    probes += [(pg_once, wan_plan.pg_params(plan, name, u)) for u in users]
    deadline = time.monotonic() + timeout
    for fn, arg in probes:
        while True:
            try:
                fn(arg)
                break
            except Exception as e:  # noqa: BLE001  (any failure: not ready yet)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: {fn.__name__} not answering after {timeout}s: {e}")
                time.sleep(0.05)
    return {"ok": True, "redis_py": redis.__version__, "psycopg": psycopg.__version__,
            "libpq": psycopg.pq.version()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["check", "pg", "redis", "set64k"])
    p.add_argument("--plan", required=True)
    p.add_argument("--chain", required=True)
    p.add_argument("--user", choices=["scram", "trust"], default="scram")
    p.add_argument("-n", type=int, default=60)
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()
    plan = wan_plan.load(a.plan)
    if a.what == "check":
        out = check(plan, a.chain, a.timeout)
    elif a.what == "pg":
        out = samples(pg_once, wan_plan.pg_params(plan, a.chain, a.user), a.n)
    elif a.what == "redis":
        out = samples(redis_once, wan_plan.redis_kwargs(plan, a.chain), a.n)
    else:
        out = set64k(plan, a.chain, a.n)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
