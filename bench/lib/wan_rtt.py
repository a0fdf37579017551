#!/usr/bin/env python3
"""Check that the emulated WAN link adds the round-trip time it claims.

Runs an echo server on --echo-port (the link's check route relays --link-port to it), then
through the link: ping-pongs of one byte on an open connection (each should take one RTT),
new connections up to their first echo (two RTT with the handshake charged: connect, then
the exchange), a half-close (the server must see EOF and close), and a bulk transfer (at most
window / RTT per direction). The ping-pongs alternate with ones straight to the echo server,
so what the link adds is told apart from the time this client and the echo server take to
be scheduled on a busy machine. Prints one JSON object; exits 1 when what the link adds is
more than --tolerance off the RTT in each of --attempts tries.
"""
import argparse
import json
import socket
import statistics
import sys
import threading
import time

BULK = 48 << 20


def serve_echo(listener):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def echo(conn):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(1 << 20):
            conn.sendall(data)


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def exchange(s):
    s.sendall(b"x")
    if s.recv(1) != b"x":
        raise RuntimeError("echo through the link returned something else")


def timed_exchange(s):
    t0 = time.perf_counter()
    exchange(s)
    return time.perf_counter() - t0


def ping_pongs(link_port, echo_port, n):
    """n ping-pongs through the link and n straight to the echo server, alternating."""
    with connect(link_port) as linked, connect(echo_port) as direct:
        exchange(linked)
        pairs = [(timed_exchange(linked), timed_exchange(direct)) for _ in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def first_exchanges(port, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with connect(port) as s:
            exchange(s)
            times.append(time.perf_counter() - t0)
    return times


def half_close(port):
    """Shut down our sending side: the echo server sees EOF, closes, and we read EOF."""
    with connect(port) as s:
        exchange(s)
        t0 = time.perf_counter()
        s.shutdown(socket.SHUT_WR)
        if s.recv(1) != b"":
            raise RuntimeError("half-close: expected EOF back through the link")
        return time.perf_counter() - t0


def bulk(port):
    """Send BULK bytes through the echo and read them back: MiB/s per direction."""
    with connect(port) as s:
        exchange(s)
        received = 0
        t0 = time.perf_counter()

        def reader():
            nonlocal received
            while received < BULK and (data := s.recv(1 << 20)):
                received += len(data)

        t = threading.Thread(target=reader)
        t.start()
        chunk = b"\0" * (1 << 20)
        for _ in range(BULK >> 20):
            s.sendall(chunk)
        t.join()
        if received != BULK:
            raise RuntimeError(f"bulk: {received} of {BULK} bytes came back")
        return BULK / (1 << 20) / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--link-port", type=int, required=True)
    p.add_argument("--echo-port", type=int, required=True)
    p.add_argument("--rtt-ms", type=float, required=True)
    p.add_argument("--handshake", type=int, default=1, help="1: the link charges the TCP handshake")
    p.add_argument("-n", type=int, default=40)
    p.add_argument("--tolerance", type=float, default=0.03)
    p.add_argument("--attempts", type=int, default=3)
    a = p.parse_args()

    listener = socket.create_server(("127.0.0.1", a.echo_port))
    threading.Thread(target=serve_echo, args=(listener,), daemon=True).start()

    for attempt in range(1, a.attempts + 1):
        pp, direct = ping_pongs(a.link_port, a.echo_port, a.n)
        added = statistics.median(pp) - statistics.median(direct)
        if abs(added * 1000 / a.rtt_ms - 1) <= a.tolerance:
            break
    fx = first_exchanges(a.link_port, max(5, a.n // 4))
    out = {
        "rtt_ms": a.rtt_ms,
        "ping_pong_median_ms": statistics.median(pp) * 1000,
        "ping_pong_p90_ms": statistics.quantiles(pp, n=10)[-1] * 1000,
        "ping_pong_n": len(pp),
        "direct_ping_pong_median_ms": statistics.median(direct) * 1000,
        "link_added_ms": added * 1000,
        "attempts": attempt,
        "new_conn_first_echo_median_ms": statistics.median(fx) * 1000,
        "new_conn_expected_ms": a.rtt_ms * (2 if a.handshake else 1),
        "half_close_ms": half_close(a.link_port) * 1000,
        "bulk_mib_s": bulk(a.link_port),
    }
    out["link_error"] = out["link_added_ms"] / a.rtt_ms - 1
    out["ok"] = abs(out["link_error"]) <= a.tolerance
    print(json.dumps(out))
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
