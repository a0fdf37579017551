#!/usr/bin/env python3
"""Turn a bench/wan.sh raw file into the markdown table and the PNG chart.

Latencies: median and p90 of all samples of all rounds, in ms and in round trips (÷ RTT);
"added RTT" = (chain's median − plain's median) ÷ RTT. Throughputs: median over the rounds.
Ratios are to the best peer (stunnel, haproxy, nginx) of the same run.
"""
import argparse
import json
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

ALL_CHAINS = ["plain", "snigate", "snigate-warm", "snigate-login", "stunnel", "haproxy", "nginx", "backend-tls"]
PEERS = ["stunnel", "haproxy", "nginx"]
SNIGATES = ["snigate", "snigate-warm", "snigate-login"]
LATENCY = [  # workload, label
    ("pg_scram", "new PG connection + SELECT 1, SCRAM"),
    ("pg_trust", "new PG connection + SELECT 1, trust"),
    ("redis", "new Redis connection + PING"),
    ("celery", "Celery task sent alone, send → result committed"),
]
THROUGHPUT = [  # workload, metric, label
    ("celery", "burst_tasks_s", "Celery burst, tasks/s"),
    ("set64k", "mib_s", "64 KiB SET MiB/s"),
]


def load(path):
    samples = defaultdict(lambda: defaultdict(list))  # (chain, workload) -> round -> [ms]
    values = defaultdict(dict)  # (chain, workload, metric) -> {round: value}
    failed = set()
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        rnd, chain, workload, metric, value = line.split("\t")
        if metric == "sample_ms":
            samples[(chain, workload)][int(rnd)].append(float(value))
        elif metric == "failed":
            failed.add((chain, workload))
        else:
            values[(chain, workload, metric)][int(rnd)] = float(value)
    return samples, values, failed


def p90(xs):
    return statistics.quantiles(xs, n=10)[-1] if len(xs) > 1 else xs[0]


def fmt(v):
    if v is None:
        return "–"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def best_peer(cells, higher):
    cands = [(cells[p], p) for p in PEERS if cells.get(p) is not None]
    return (max if higher else min)(cands) if cands else (None, None)


class Report:
    def __init__(self, samples, values, failed, meta, chains):
        self.samples, self.values, self.failed, self.meta = samples, values, failed, meta
        self.chains = chains
        self.rtt = float(meta["rtt_ms"])
        self.rounds = sorted({r for v in samples.values() for r in v} | {r for v in values.values() for r in v})
        self.lines = []
        self.chart = []

    def pooled(self, chain, workload):
        return [x for xs in self.samples.get((chain, workload), {}).values() for x in xs]

    def stat(self, chain, workload, fn):
        xs = self.pooled(chain, workload)
        return fn(xs) if xs else None

    def throughput(self, chain, workload, metric):
        v = self.values.get((chain, workload, metric))
        return statistics.median(v.values()) if v else None

    def missing(self, chain, workload):
        if f"na.{chain}" in self.meta:
            return "n/a"
        return "failed" if (chain, workload) in self.failed else "–"

    def row(self, label, higher, cells, show, per_round=None):
        best, who = best_peer(cells, higher)
        out = [label + (" ↑" if higher else " ↓")]
        for c in self.chains:
            v = cells.get(c)
            if v is None:
                out.append(show(c, None))
                continue
            ratio = f" ({v / best:.2f}×)" if best and c != "plain" else ""
            out.append(show(c, v) + ratio)
        sn = cells.get("snigate")
        out += [who or "–", f"**{sn / best:.2f}×**" if sn is not None and best else "–"]
        out.append(", ".join(f"{r:.2f}" for r in per_round or []) if per_round and len(per_round) > 1 else "")
        self.lines.append("| " + " | ".join(out) + " |")

    def per_round_ratio(self, higher, value_of):
        ratios = []
        for rnd in self.rounds:
            cells = {c: value_of(c, rnd) for c in self.chains}
            best, _ = best_peer(cells, higher)
            if best and cells.get("snigate") is not None:
                ratios.append(cells["snigate"] / best)
        return ratios

    def latency_rows(self, workload, label):
        med = {c: self.stat(c, workload, statistics.median) for c in self.chains}
        hi = {c: self.stat(c, workload, p90) for c in self.chains}
        floor = med.get("plain")

        def ms_rtt(c, v):
            return self.missing(c, workload) if v is None else f"{fmt(v)} [{v / self.rtt:.1f}]"

        def round_median(c, rnd):
            xs = self.samples.get((c, workload), {}).get(rnd)
            return statistics.median(xs) if xs else None

        self.row(f"{label}: median ms [RTT]", False, med, ms_rtt, self.per_round_ratio(False, round_median))
        self.row(f"{label}: p90 ms [RTT]", False, hi, ms_rtt)
        if floor is not None:
            added = {c: (v - floor) / self.rtt for c, v in med.items() if v is not None}
            self.lines.append("| " + " | ".join(
                [f"{label}: added RTT over plain ↓"]
                + [f"{added[c]:+.2f}" if c in added else self.missing(c, workload) for c in self.chains]
                + ["", "", ""]) + " |")
        self.chart.append((label, {c: (v / self.rtt if v is not None else None) for c, v in med.items()}))

    def throughput_row(self, workload, metric, label):
        cells = {c: self.throughput(c, workload, metric) for c in self.chains}

        def show(c, v):
            return self.missing(c, workload) if v is None else fmt(v)

        def value_of(c, rnd):
            return self.values.get((c, workload, metric), {}).get(rnd)

        self.row(label, True, cells, show, self.per_round_ratio(True, value_of))

    def table(self):
        head = ["metric"] + self.chains + ["best peer", "snigate ÷ best", "snigate ÷ best per round"]
        self.lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|"]
        for workload, label in LATENCY:
            if any(self.pooled(c, workload) for c in self.chains):
                self.latency_rows(workload, label)
        for workload, metric, label in THROUGHPUT:
            if any(self.throughput(c, workload, metric) is not None for c in self.chains):
                self.throughput_row(workload, metric, label)
        return "\n".join(self.lines)

    def targets(self):
        """The issue's targets, judged for each snigate chain of the run."""
        med = {(c, w): self.stat(c, w, statistics.median) for c in self.chains for w, _ in LATENCY}
        plain = {w: med.get(("plain", w)) for w, _ in LATENCY}
        peers_set = [self.throughput(p, "set64k", "mib_s") for p in PEERS]
        best_set = max([v for v in peers_set if v is not None], default=None)
        out = ["| workload | target | " + " | ".join(c for c in SNIGATES if c in self.chains) + " |",
               "|---|---|" + "---:|" * sum(c in self.chains for c in SNIGATES)]

        def added(c, w):
            v, f = med.get((c, w)), plain.get(w)
            return None if v is None or f is None else (v - f) / self.rtt

        def judge(value, ok, text):
            return "–" if value is None else f"{text} {'yes' if ok else '**no**'}"

        rules = [
            ("new Redis connection + PING", "adds ≤ 0.3 RTT",
             lambda c: (lambda a: judge(a, a is not None and a <= 0.3, f"{a:+.2f} RTT" if a is not None else ""))(added(c, "redis"))),
            ("new PG connection + SELECT 1, trust", "adds ≤ 0.3 RTT",
             lambda c: (lambda a: judge(a, a is not None and a <= 0.3, f"{a:+.2f} RTT" if a is not None else ""))(added(c, "pg_trust"))),
            ("new PG connection + SELECT 1, SCRAM", "adds ≤ 0.3 RTT; with login ≤ the trust floor",
             lambda c: self.scram_target(c, med, plain, added)),
            ("Celery task latency", "≤ the plain floor",
             lambda c: (lambda v: judge(v, v is not None and plain["celery"] is not None and v <= plain["celery"],
                                        f"{fmt(v)} ms vs {fmt(plain['celery'])}" if v is not None else ""))(med.get((c, "celery")))),
            ("64 KiB SET MiB/s", "≥ the best peer",
             lambda c: (lambda v: judge(v, v is not None and best_set is not None and v >= best_set,
                                        f"{fmt(v)} vs {fmt(best_set)}" if v is not None else ""))(self.throughput(c, "set64k", "mib_s"))),
        ]
        for name, target, fn in rules:
            out.append(f"| {name} | {target} | " + " | ".join(fn(c) for c in SNIGATES if c in self.chains) + " |")
        return "\n".join(out)

    def scram_target(self, c, med, plain, added):
        if c == "snigate-login":
            v, floor = med.get((c, "pg_scram")), plain.get("pg_trust")
            ok = v is not None and floor is not None and v <= floor
            return "–" if v is None else f"{fmt(v)} ms vs trust floor {fmt(floor)} {'yes' if ok else '**no**'}"
        a = added(c, "pg_scram")
        return "–" if a is None else f"{a:+.2f} RTT {'yes' if a <= 0.3 else '**no**'}"


def chart(report, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"plain": "#000000", "snigate": "#d62728", "snigate-warm": "#ff7f0e", "snigate-login": "#ff9896",
              "stunnel": "#7f7f7f", "haproxy": "#1f77b4", "nginx": "#2ca02c", "backend-tls": "#9467bd"}
    chains = [c for c in report.chains if c in colors]
    rows = report.chart
    tput = [(label, {c: report.throughput(c, w, m) for c in chains}) for w, m, label in THROUGHPUT]
    fig, axes = plt.subplots(1, 2, figsize=(15, 1.1 * max(len(rows), 2) + 2.2),
                             gridspec_kw={"width_ratios": [3, 2]})
    bar = 0.8 / len(chains)
    for ax, groups, xlabel in ((axes[0], rows, "median, in round trips (median ÷ RTT)"),
                               (axes[1], tput, "ratio to the best peer")):
        for i, c in enumerate(chains):
            ys = [j + (i - (len(chains) - 1) / 2) * bar for j in range(len(groups))]
            if ax is axes[1]:
                xs = []
                for _, vals in groups:
                    best, _ = best_peer(vals, True)
                    xs.append((vals.get(c) or 0) / best if best else 0)
            else:
                xs = [vals.get(c) or 0 for _, vals in groups]
            ax.barh(ys, xs, height=bar, color=colors[c], label=c)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([g[0] for g in groups], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[1].axvline(1.0, color="black", lw=0.8)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def rtt_check_text(meta):
    if "rtt_check" not in meta:
        return ""
    r = json.loads(meta["rtt_check"])
    return (f"Link check (echo through the link): ping-pong median {r['ping_pong_median_ms']:.2f} ms, "
            f"p90 {r['ping_pong_p90_ms']:.2f} ms over {r['ping_pong_n']} "
            f"({r['ping_pong_error'] * 100:+.1f} % vs the nominal {r['rtt_ms']:g} ms); a new connection's "
            f"first echo {r['new_conn_first_echo_median_ms']:.1f} ms (expected {r['new_conn_expected_ms']:g}: "
            f"handshake + exchange); half-close passed back in {r['half_close_ms']:.1f} ms; "
            f"bulk echo {r['bulk_mib_s']:.0f} MiB/s per direction.")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--raw", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stamp", required=True)
    a = p.parse_args()
    meta = dict(line.split("=", 1) for line in Path(a.meta).read_text().splitlines() if "=" in line)
    samples, values, failed = load(a.raw)
    present = {k[0] for k in samples} | {k[0] for k in values} | {c for c, _ in failed}
    chains = [c for c in ALL_CHAINS if c in present or f"na.{c}" in meta]
    report = Report(samples, values, failed, meta, chains)
    body = report.table()
    na = "".join(f"- `{c}`: n/a — the binary refuses the key: {meta['na.' + c]}\n" for c in chains if f"na.{c}" in meta)
    md = f"""# snigate across a WAN — {a.stamp}

Emulated link (bench/wanlink): RTT {meta.get('rtt_ms')} ms (RTT/2 each way, TCP handshake
{meta.get('tcp_handshake', 'charged')}), window {meta.get('window')} per direction and connection. {meta.get('cores', '?')} cores
({meta.get('cpu', '?')}), kernel {meta.get('kernel', '?')}; snigate {meta.get('snigate', '?')},
stunnel {meta.get('stunnel', '?')}, haproxy {meta.get('haproxy', '?')}, nginx {meta.get('nginx', '?')},
OpenSSL {meta.get('openssl', '?')}, Redis {meta.get('redis', '?')}, PostgreSQL {meta.get('postgres', '?')};
clients: {meta.get('clients', '?')}; Celery side: {meta.get('celery', '?')}.
{meta.get('rounds', '?')} interleaved round(s){' (--quick)' if meta.get('quick') == '1' else ''}; workloads took
{meta.get('elapsed_s', '?')} s; load average at the start {meta.get('loadavg_start', '?')}, at the end {meta.get('loadavg_end', '?')}.

{rtt_check_text(meta)}

Latency cells: median (or p90) in ms over all samples of all rounds, [÷ RTT], (÷ the best
peer's). "added RTT over plain" = (median − plain's median) ÷ RTT. Throughputs: median over
the rounds. Best peer: the best of stunnel, haproxy, nginx. Method: [bench/README.md](../README.md).

{body}

{na}
## The issue's targets

{report.targets()}
"""
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"wan-{a.stamp}.md").write_text(md)
    shutil.copyfile(out / f"wan-{a.stamp}.md", out / "wan-latest.md")
    chart(report, out / "wan-latest.png", f"snigate across a WAN (RTT {meta.get('rtt_ms')} ms), {a.stamp}")


if __name__ == "__main__":
    main()
