#!/usr/bin/env python3
"""Group a flat `perf report --sort comm,dso,sym -g none` into categories of work.

Usage: perf_buckets.py WORKLOAD FLAT_REPORT  -> a markdown section on stdout.
"""
import re
import sys
from collections import defaultdict

LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[([.k])\]\s+(.*?)\s*$")

# First match wins; (category, regexp on "dso symbol").
RULES = [
    ("crypto: AES-GCM (ring, rustls record seal/open)", r"aes|gcm|ghash|gfmul|clmul|ctr32|aesni|messageencrypter|messagedecrypter|seal_in_place|open_in_place|aead"),
    ("crypto: handshake (ring/rustls ECDHE, ECDSA, SHA, HKDF)", r"x25519|p256|ecdsa|ecp_|nistz|sha256|sha512|sha2|hkdf|hmac|bn_|limbs|fiat|ring::|ring_core"),
    ("kernel: data copies", r"\[k\].*(copy_user|copy_to_iter|copy_from_iter|copy_page|memcpy|memmove|rep_movs|csum)"),
    ("kernel: epoll / scheduler / futex / wakeups", r"\[k\].*(ep_|epoll|schedule|switch|futex|wake|enqueue|dequeue|pick_next|idle|hrtimer|update_curr|ttwu|select_task)"),
    ("kernel: TCP/IP loopback", r"\[k\].*(tcp|bbr|ip_|ipv4|skb|sock|__dev|loopback|net_|napi|sk_|inet|release_sock|__kfree_skb|__alloc_skb|kmem|kmalloc|kfree|slab|page_frag|softirq|bh_|netif|process_backlog|datagram)"),
    ("kernel: IRQ-restore points (VM sampling lands here: wakeups, softirq exit)", r"\[k\].*(irqrestore|unlock_irq)"),
    ("kernel: syscall entry/exit, fd lookup, other", r"\[k\]"),
    ("user: memcpy/memmove", r"memcpy|memmove|memset|__memcpy|__memmove"),
    ("user: allocator (malloc/free)", r"malloc|free|realloc|calloc|_int_|__rust_alloc|__rust_dealloc|__rdl_|alloc::alloc|arena|tcache|sysmalloc"),
    ("rustls: record layer / state machine", r"rustls|tokio_rustls"),
    ("tokio: runtime, I/O driver, scheduling", r"tokio::runtime|tokio::sync|tokio::loom|mio::|parking_lot|tokio::io::poll_evented|tokio::net|std::thread|tokio::task|tokio::util|tokio::io::driver"),
    ("snigate + tokio io utils (relay, copy)", r"snigate|copy_bidirectional|tokio::io|CopyBuffer"),
    ("libc other (syscall wrappers)", r"libc|__libc|__GI|__send|__recv|epoll_wait|__write|__read|syscall"),
]


def categorize(dso, kind, sym):
    key = f"{dso} [{kind}] {sym}".lower()
    for name, rx in RULES:
        if re.search(rx, key):
            return name
    return "other / unresolved"


def main():
    workload, path = sys.argv[1], sys.argv[2]
    short = "--short" in sys.argv[3:]
    buckets = defaultdict(float)
    by_comm = defaultdict(float)
    syms = []
    for line in open(path, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        pct, comm, dso, kind, sym = float(m[1]), m[2], m[3], m[4], m[5]
        buckets[categorize(dso, kind, sym)] += pct
        by_comm[comm] += pct
        syms.append((pct, comm, dso, kind, sym))
    kernel = sum(s[0] for s in syms if s[3] == "k")
    user = sum(s[0] for s in syms if s[3] != "k")
    print(f"## {workload}\n")
    print(f"Kernel {kernel:.1f} %, user space {user:.1f} % of the samples.\n")
    print("| category | % of snigate CPU |\n|---|---:|")
    for name, pct in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {pct:.1f} |")
    print()
    if short:
        return
    print("By thread name: " + ", ".join(f"{c} {p:.1f}%" for c, p in sorted(by_comm.items(), key=lambda kv: -kv[1])))
    print()
    print("Top symbols (self):\n")
    print("| % | thread | dso | symbol |\n|---:|---|---|---|")
    for pct, comm, dso, kind, sym in sorted(syms, reverse=True)[:15]:
        sym = sym if len(sym) < 110 else sym[:107] + "..."
        print(f"| {pct:.2f} | {comm} | {dso} | `{sym.replace('|', '/')}` |")
    print()


if __name__ == "__main__":
    main()
