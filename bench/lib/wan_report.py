#!/usr/bin/env python3
"""Turn a bench/wan.sh raw file into the markdown table and the PNG chart.

Latencies: median and p90 of all samples of all rounds, in ms and in round trips (÷ RTT);
"added RTT" = (chain's median − plain's median) ÷ RTT. Throughputs: median over the rounds.
Ratios are to the best peer (stunnel, haproxy, nginx) of the same run.
"""
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import wan_chart
from report_common import PEERS, arguments, best_peer, publish

ALL_CHAINS = ["plain", "snigate", "snigate-warm", "snigate-login", "stunnel", "haproxy", "nginx", "backend-tls"]
SNIGATES = ["snigate", "snigate-warm", "snigate-login"]
NEEDS = {"snigate-warm": "tunnels[].warm", "snigate-login": "routes[].login"}  # keys the variants need
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
        if floor is not None:
            self.chart.append((label, {c: (v - floor) / self.rtt for c, v in med.items() if v is not None}))

    def throughput_row(self, workload, metric, label):
        cells = {c: self.throughput(c, workload, metric) for c in self.chains}

        def show(c, v):
            return self.missing(c, workload) if v is None else fmt(v)

        def value_of(c, rnd):
            return self.values.get((c, workload, metric), {}).get(rnd)

        self.row(label, True, cells, show, self.per_round_ratio(True, value_of))

    def header(self, chain):
        if f"na.{chain}" in self.meta:
            return f"{chain}: n/a (binary lacks `{NEEDS.get(chain, '?')}`)"
        return chain

    def table(self):
        head = ["metric"] + [self.header(c) for c in self.chains]
        head += ["best peer", "snigate ÷ best", "snigate ÷ best per round"]
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
        chains = [c for c in SNIGATES if c in self.chains]
        rules = [
            ("new Redis connection + PING", "adds ≤ 0.3 RTT", lambda c: self.adds_at_most(c, "redis", 0.3)),
            ("new PG connection + SELECT 1, trust", "adds ≤ 0.3 RTT", lambda c: self.adds_at_most(c, "pg_trust", 0.3)),
            ("new PG connection + SELECT 1, SCRAM", "adds ≤ 0.3 RTT; with login ≤ the trust floor", self.scram_target),
            ("Celery task latency", "≤ the plain floor",
             lambda c: self.at_most(c, "celery", self.median("plain", "celery"), "plain")),
            ("64 KiB SET MiB/s", "≥ the best peer", self.set_target),
        ]
        out = ["| workload | target | " + " | ".join(self.header(c) for c in chains) + " |",
               "|---|---|" + "---:|" * len(chains)]
        for name, target, judge in rules:
            out.append(f"| {name} | {target} | " + " | ".join(judge(c) for c in chains) + " |")
        return "\n".join(out)

    def median(self, chain, workload):
        return self.stat(chain, workload, statistics.median)

    def adds_at_most(self, chain, workload, limit):
        v, floor = self.median(chain, workload), self.median("plain", workload)
        if v is None or floor is None:
            return "–"
        added = (v - floor) / self.rtt
        return f"{added:+.2f} RTT {verdict(added <= limit)}"

    def at_most(self, chain, workload, limit, what):
        v = self.median(chain, workload)
        if v is None or limit is None:
            return "–"
        return f"{fmt(v)} ms vs {what} {fmt(limit)} {verdict(v <= limit)}"

    def scram_target(self, chain):
        if chain == "snigate-login":
            return self.at_most(chain, "pg_scram", self.median("plain", "pg_trust"), "the trust floor")
        return self.adds_at_most(chain, "pg_scram", 0.3)

    def set_target(self, chain):
        v = self.throughput(chain, "set64k", "mib_s")
        best, who = best_peer({p: self.throughput(p, "set64k", "mib_s") for p in PEERS}, True)
        if v is None or best is None:
            return "–"
        return f"{fmt(v)} vs {who} {fmt(best)} {verdict(v >= best)}"


def verdict(ok):
    return "yes" if ok else "**no**"


def rtt_check_text(meta):
    if "rtt_check" not in meta:
        return ""
    r = json.loads(meta["rtt_check"])
    added = ""
    if "link_added_ms" in r:
        added = (f"; straight to the echo server {r['direct_ping_pong_median_ms']:.2f} ms, so the link adds "
                 f"{r['link_added_ms']:.2f} ms ({r['link_error'] * 100:+.1f} % vs the nominal {r['rtt_ms']:g} ms)")
    return (f"Link check (an echo server behind the link): ping-pong median {r['ping_pong_median_ms']:.2f} ms, "
            f"p90 {r['ping_pong_p90_ms']:.2f} ms over {r['ping_pong_n']}{added}; a new connection's "
            f"first echo {r['new_conn_first_echo_median_ms']:.1f} ms (expected {r['new_conn_expected_ms']:g}: "
            f"handshake + exchange); half-close passed back in {r['half_close_ms']:.1f} ms; "
            f"bulk echo {r['bulk_mib_s']:.0f} MiB/s per direction.")


def why(message):
    """The binary's refusal, without the work directory's path."""
    return re.sub(r"\S*/(probe-\w+\.yaml)", r"\1", message)


def main():
    a, meta = arguments()
    samples, values, failed = load(a.raw)
    present = {k[0] for k in samples} | {k[0] for k in values} | {c for c, _ in failed}
    chains = [c for c in ALL_CHAINS if c in present or f"na.{c}" in meta]
    report = Report(samples, values, failed, meta, chains)
    body = report.table()
    na = "".join(f"- `{c}`: n/a, the binary lacks `{NEEDS.get(c, '?')}`; `--check` said: {why(meta['na.' + c])}\n"
                 for c in chains if f"na.{c}" in meta)
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
    out = publish(a.out, "wan-", a.stamp, md)
    ran = [c for c in chains if f"na.{c}" not in meta]
    ratios = []
    for workload, metric, label in THROUGHPUT:
        values = {c: report.throughput(c, workload, metric) for c in ran}
        best, _ = best_peer(values, True)
        ratios.append((label, {c: v / best for c, v in values.items() if v is not None and best}))
    wan_chart.chart(ran, report.chart, ratios, out / "wan-latest.png",
                    f"snigate across a WAN (RTT {meta.get('rtt_ms')} ms), {a.stamp}")


if __name__ == "__main__":
    main()
