#!/usr/bin/env python3
"""Turn a bench/run.sh raw file into the markdown table and the PNG chart.

Each number is the median over the rounds of the run. Every cell also shows its ratio to the
best peer (the best of stunnel, haproxy and nginx for that metric in the same run).
"""
import statistics
from collections import defaultdict
from pathlib import Path

from report_common import PEERS, arguments, best_peer, publish

# snigate-1w: one tokio worker per process, in raw files from before runtime.worker_threads
ALL_CHAINS = ["direct", "snigate", "snigate-mt", "snigate-1w", "stunnel", "haproxy", "nginx"]
CHAINS = ALL_CHAINS  # narrowed to the chains present in the raw file

# (workload, metric, label, higher is better, target ratio for snigate vs best peer).
# The new-connection targets are on connections per second, with full handshakes and with
# resumed ones alike (each chain's full-handshake listener or tunnel has resumption off).
ROWS = [
    ("p1", "get_ops_s", "redis P1 GET ops/s", True, 1.5),
    ("p1", "set_ops_s", "redis P1 SET ops/s", True, None),
    ("p1", "get_p50_ms", "redis P1 GET p50 ms", False, None),
    ("p1", "get_p99_ms", "redis P1 GET p99 ms", False, None),
    ("p1", "cpu_s_per_100k", "CPU-s / 100k P1 ops", False, 0.5),
    ("p32", "get_ops_s", "redis P32 GET ops/s", True, 1.5),
    ("p32", "set_ops_s", "redis P32 SET ops/s", True, None),
    ("p32", "get_p99_ms", "redis P32 GET p99 ms", False, None),
    ("p32", "cpu_s_per_100k", "CPU-s / 100k P32 ops", False, None),
    ("big", "mib_s", "64 KiB SET MiB/s", True, 1.5),
    ("big", "set_p99_ms", "64 KiB SET p99 ms", False, None),
    ("big", "cpu_s_per_100k", "CPU-s / 100k 64 KiB SETs", False, None),
    ("pg", "tps", "pgbench -S TPS (16 clients)", True, None),
    ("pg", "latency_ms", "pgbench -S latency ms", False, None),
    ("pg", "cpu_s_per_100k", "CPU-s / 100k pgbench -S tx", False, 0.5),
    ("pgc", "tps", "pgbench -S -C TPS (new conn per tx)", True, None),
    ("pgc", "cpu_s_per_100k", "CPU-s / 100k pgbench -S -C tx", False, None),
    ("conn_full", "conns_s", "new conns/s, full handshake", True, 1.5),
    ("conn_full", "cpu_s_per_100k", "CPU-s / 100k new conns, full", False, None),
    ("conn_resumed", "conns_s", "new conns/s, resumption on", True, 1.5),
    ("conn_resumed", "cpu_s_per_100k", "CPU-s / 100k new conns, resumption on", False, None),
    ("idle", "kib_client", "idle KiB/conn, client side", False, 0.5),
    ("idle", "kib_server", "idle KiB/conn, server side", False, 0.5),
    ("idle", "cpu_s_per_100k", "CPU-s / 100k idle conns (open+close)", False, None),
]


def load(path):
    data = defaultdict(dict)  # (chain, workload, metric) -> {round: value}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        rnd, chain, workload, metric, value = line.split("\t")
        try:
            data[(chain, workload, metric)][int(rnd)] = float(value)
        except ValueError:
            pass
    return data


def fmt(v):
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(v, best):
    if v is None or best in (None, 0):
        return None
    return v / best


def table(data, meta):
    # Raw files from before the sidecar's `session_resumption: false` ran snigate's full-handshake
    # workload through its resuming tunnel: that row is not judged then.
    old_full = meta.get("snigate_full_handshake") != "yes"
    rounds = sorted({r for vals in data.values() for r in vals})
    med = {k: statistics.median(v.values()) for k, v in data.items() if v}
    lines = []
    head = ["metric"] + CHAINS + ["best peer", "snigate ÷ best", "target", "met", "snigate ÷ best per round"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|")
    chart_rows = []
    for workload, metric, label, higher, target in ROWS:
        values = {c: med.get((c, workload, metric)) for c in CHAINS}
        if all(v is None for v in values.values()):
            continue
        best, who = best_peer(values, higher)
        cells = [label + (" ↑" if higher else " ↓")]
        dagger = "†" if old_full and workload == "conn_full" else ""
        for c in CHAINS:
            v = values[c]
            r = ratio(v, best)
            mark = dagger if c.startswith("snigate") else ""
            cells.append(fmt(v) + mark + (f" ({r:.2f}×)" if r is not None and c != "direct" else ""))
        r = ratio(values.get("snigate"), best)
        cells.append(who or "–")
        cells.append((f"**{r:.2f}×**" if r is not None else "–") + dagger)
        if target is None:
            cells += ["", ""]
        else:
            cells.append(("≥ " if higher else "≤ ") + f"{target}×")
            ok = r is not None and (r >= target if higher else r <= target)
            # no ratio (no snigate or no peer in this run): nothing to judge
            cells.append("n/a†" if dagger else ("–" if r is None else "yes" if ok else "**no**"))
        per_round = []
        for rnd in rounds:
            vs = {c: data.get((c, workload, metric), {}).get(rnd) for c in CHAINS}
            b, _ = best_peer(vs, higher)
            rr = ratio(vs.get("snigate"), b)
            if rr is not None:
                per_round.append(f"{rr:.2f}")
        cells.append(", ".join(per_round) if len(per_round) > 1 else "")
        lines.append("| " + " | ".join(cells) + " |")
        chart_label = label + (" (snigate: †, resumed)" if dagger else "")
        chart_rows.append((chart_label, higher, target, {c: ratio(values.get(c), best) for c in CHAINS if c != "direct"}))
    return "\n".join(lines), chart_rows


def chart(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker.FuncFormatter)

    groups = [("higher is better (ratio to best peer)", [r for r in rows if r[1]]),
              ("lower is better (ratio to best peer)", [r for r in rows if not r[1]])]
    colors = {"snigate": "#d62728", "snigate-mt": "#ff9896", "snigate-1w": "#ff9896", "stunnel": "#7f7f7f", "haproxy": "#1f77b4", "nginx": "#2ca02c"}
    chains = [c for c in colors if c in CHAINS]
    heights = [max(1, len(g[1])) for g in groups]
    fig, axes = plt.subplots(1, 2, figsize=(15, 0.55 * max(heights) + 2.2))
    for ax, (name, grp) in zip(axes, groups):
        bar = 0.8 / len(chains)
        for i, c in enumerate(chains):
            ys = [j + (i - (len(chains) - 1) / 2) * bar for j in range(len(grp))]
            xs = [(r[3].get(c) or 0) for r in grp]
            ax.barh(ys, xs, height=bar, color=colors[c], label=c)
        for j, r in enumerate(grp):
            if r[2] is not None:
                ax.plot([r[2], r[2]], [j - 0.45, j + 0.45], color="black", lw=1.5, ls=":")
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_yticks(range(len(grp)))
        ax.set_yticklabels([r[0] for r in grp], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}×"))
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title + "   (dotted: issue-6 target for snigate)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    a, meta = arguments()
    data = load(a.raw)
    global CHAINS
    CHAINS = [c for c in ALL_CHAINS if any(k[0] == c for k in data)]
    body, rows = table(data, meta)
    peers = ", ".join(f"{k} {meta.get(k, '?')}" for k in ("stunnel", "haproxy", "nginx"))
    setup = []
    for c in CHAINS:
        if f"threads.{c}" in meta:
            setup.append(f"| {c} | {meta.get('processes.' + c, '?')} | {meta.get('threads.' + c, '?')} | {meta.get('tls.' + c, '?')} |")
    workers = meta.get("snigate_workers", "default")
    if workers != "default" and "snigate-mt" in CHAINS:
        workers += " (snigate-mt: 2)"
    suites = meta.get("tls_probe_suites")
    probe = (" with its default order (AES-256 first)" if not suites else
             " that offers the TLS 1.3\nsuites in the order every chain's client side is configured with, i.e. what the chain's two\n"
             f"sides agree on (`{suites}`)")
    full_note = """"Full handshake" rows: every chain's client side has a Redis listener with TLS session
resumption turned off (snigate `session_resumption: false`, stunnel `sessionResume = no`,
HAProxy `no-ssl-reuse`, nginx `proxy_ssl_session_reuse off`)."""
    if not any(k[1] == "conn_full" for k in data):
        full_note = ""
    elif meta.get("snigate_full_handshake") != "yes":
        full_note = """† This run predates the sidecar's `session_resumption: false`: snigate's "full handshake"
row ran its resuming tunnel, so it is not a full-handshake number and the target is not judged
on it. The peers' "full" rows use a client side with resumption turned off (stunnel
`sessionResume = no`, HAProxy `no-ssl-reuse`, nginx `proxy_ssl_session_reuse off`)."""
    md = f"""# snigate benchmark — {a.stamp}

Loopback, {meta.get('cores', '?')} cores ({meta.get('cpu', '?')}), kernel {meta.get('kernel', '?')};
snigate {meta.get('snigate', '?')}, {peers}, OpenSSL {meta.get('openssl', '?')},
Redis {meta.get('redis', '?')}, PostgreSQL {meta.get('postgres', '?')}.
{meta.get('rounds', '?')} interleaved round(s){' (--quick)' if meta.get('quick') == '1' else ''}; {meta.get('params', '')};
workloads took {meta.get('elapsed_s', '?')} s; load average at the start {meta.get('loadavg_start', '?')}, at the end {meta.get('loadavg_end', '?')}.
snigate worker threads per process: {workers}, RUST_LOG={meta.get('snigate_log', '?')}.

Each value is the median over the rounds; (n×) = value ÷ best peer (best of stunnel, haproxy,
nginx for that metric in this run). ↑ higher is better, ↓ lower is better. CPU-s = user+system
CPU of all proxy processes of the chain (client side + server side). Method and caveats:
[bench/README.md](../README.md).

{body}

{full_note + chr(10) + chr(10) if full_note else ""}Processes and threads per chain at start (client side + server side), and the TLS version and
cipher suite the server side negotiates with an OpenSSL client{probe}:

| chain | processes | threads | TLS |
|---|---:|---:|---|
""" + "\n".join(setup) + "\n"
    out = publish(a.out, "", a.stamp, md)
    chart(rows, out / "latest.png", f"snigate vs peers, {a.stamp}, {meta.get('rounds', '?')} round(s)")


if __name__ == "__main__":
    main()
