#!/usr/bin/env python3
"""Open COUNT idle Redis connections through a chain and report resident memory per connection.

Each connection sends one PING and waits for +PONG, so every hop of the chain (client side,
TLS, server side, Redis) is established before memory is read. VmRSS is summed over the
client-side and over the server-side processes (all processes of a multi-process peer) before
and after; the difference divided by COUNT is the cost of one idle connection on each side.
Then everything is closed and the script waits until the proxies' descriptors are released.

Prints one JSON object on stdout.
"""
import argparse
import asyncio
import json
import os
import resource
import sys
import time

PING = b"*1\r\n$4\r\nPING\r\n"


def status_sum(pids, field):
    """Sum of a numeric /proc/PID/status field (VmRSS in KiB, Threads) over the processes."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
    return total


def rss_kib(pids):
    return status_sum(pids, "VmRSS")


def threads(pids):
    return status_sum(pids, "Threads")


def fds(pids):
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


def settled_rss(pids, timeout=5.0):
    """RSS once two readings 250 ms apart agree within 0.5 % (or at the timeout)."""
    deadline = time.monotonic() + timeout
    last = rss_kib(pids)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rss_kib(pids)
        if abs(now - last) <= max(64, last // 200):
            return now
        last = now
    return last


async def open_one(port, sem, conns):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PING)
        line = await asyncio.wait_for(reader.readline(), 30)
        if line != b"+PONG\r\n":
            raise RuntimeError(f"unexpected reply {line!r}")
        conns.append(writer)


async def run(args, client, server):
    conns = []
    sem = asyncio.Semaphore(args.parallel)
    t0 = time.monotonic()
    await asyncio.gather(*(open_one(args.port, sem, conns) for _ in range(args.count)))
    opened = time.monotonic() - t0
    return conns, opened


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--parallel", type=int, default=64)
    p.add_argument("--client-pids", default="")
    p.add_argument("--server-pids", default="")
    args = p.parse_args()
    client = [int(x) for x in args.client_pids.split()]
    server = [int(x) for x in args.server_pids.split()]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    base_fds = fds(client + server)
    before = (settled_rss(client), settled_rss(server))
    threads_before = (threads(client), threads(server))
    loop = asyncio.new_event_loop()
    conns, opened = loop.run_until_complete(run(args, client, server))
    after = (settled_rss(client), settled_rss(server))
    threads_after = (threads(client), threads(server))

    for w in conns:
        w.close()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    # Wait (up to 60 s) until the proxies have closed what we opened.
    deadline = time.monotonic() + 60
    while fds(client + server) > base_fds + args.count // 100 and time.monotonic() < deadline:
        time.sleep(0.1)

    n = args.count
    json.dump(
        {
            "count": n,
            "open_seconds": round(opened, 3),
            "rss_kib_before": before,
            "rss_kib_after": after,
            "kib_per_conn_client": round((after[0] - before[0]) / n, 2) if client else None,
            "kib_per_conn_server": round((after[1] - before[1]) / n, 2) if server else None,
            "threads_before": threads_before,
            "threads_after": threads_after,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
