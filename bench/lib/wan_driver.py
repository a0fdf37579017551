#!/usr/bin/env python3
"""Run the WAN benchmark's workloads through its chains in interleaved rounds (bench/wan.sh
starts everything and calls this). For each round, each workload, every chain runs in turn,
the order rotated by one chain per round. Appends "round chain workload metric value" lines
to --raw; a failed run is recorded as metric `failed` (its output kept in the work directory)
and the rest goes on. Exits 1 if anything failed.
"""
import argparse
import json
import signal
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = ["pg_scram", "pg_trust", "redis", "celery", "set64k"]
SIZES = {  # (quick, full)
    "pg": (15, 60),
    "redis": (15, 60),
    "celery_latency": (5, 15),
    "celery_burst": (40, 100),
    "set64k": (1000, 3000),
}


class Driver:
    def __init__(self, a):
        self.a = a
        self.plan = json.loads(Path(a.plan).read_text())
        self.rtt = self.plan["rtt_ms"]
        self.failed = 0

    def size(self, key):
        return SIZES[key][0 if self.a.quick else 1]

    def command(self, workload, chain):
        common = ["--plan", self.a.plan, "--chain", chain]
        tool = [self.a.python, str(HERE / "wan_workloads.py")]
        if workload in ("pg_scram", "pg_trust"):
            return tool + ["pg", *common, "--user", workload[3:], "-n", str(self.size("pg"))]
        if workload == "redis":
            return tool + ["redis", *common, "-n", str(self.size("redis"))]
        if workload == "set64k":
            return tool + ["set64k", *common, "-n", str(self.size("set64k"))]
        return [self.a.celery_python, str(HERE / "wan_celery.py"), *common,
                "--latency-n", str(self.size("celery_latency")),
                "--burst-n", str(self.size("celery_burst")), "--workdir", self.a.workdir]

    def rec(self, rnd, chain, workload, metric, value):
        with open(self.a.raw, "a") as f:
            f.write(f"{rnd}\t{chain}\t{workload}\t{metric}\t{value}\n")

    def run_one(self, rnd, workload, chain):
        proc = subprocess.Popen(self.command(workload, chain), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = proc.communicate()
        finally:
            stop(proc)
        if proc.returncode != 0:
            log = Path(self.a.workdir) / f"failed.r{rnd}.{workload}.{chain}.log"
            log.write_text(stdout + stderr)
            self.failed += 1
            self.rec(rnd, chain, workload, "failed", 1)
            last = (stderr.strip().splitlines() or ["?"])[-1]
            return f"FAILED ({last}; {log})"
        result = json.loads(stdout)
        for key, metric in (("samples_ms", "sample_ms"), ("latency_ms", "sample_ms")):
            for v in result.get(key, []):
                self.rec(rnd, chain, workload, metric, f"{v:.3f}")
        for key in ("burst_tasks_s", "mib_s"):
            if key in result:
                self.rec(rnd, chain, workload, key, f"{result[key]:.3f}")
        samples = result.get("samples_ms") or result.get("latency_ms")
        parts = []
        if samples:
            med = statistics.median(samples)
            parts.append(f"median {med:.1f} ms [{med / self.rtt:.2f} RTT]")
        if "burst_tasks_s" in result:
            parts.append(f"burst {result['burst_tasks_s']:.1f} tasks/s")
        if "mib_s" in result:
            parts.append(f"{result['mib_s']:.1f} MiB/s")
        return ", ".join(parts)

    def run(self):
        chains = self.a.chains.split(",")
        workloads = self.a.workloads.split(",")
        for rnd in range(1, self.a.rounds + 1):
            for workload in workloads:
                for k in range(len(chains)):
                    chain = chains[(k + rnd - 1) % len(chains)]
                    if workload not in self.plan["chains"][chain]["workloads"]:
                        continue
                    result = self.run_one(rnd, workload, chain)
                    print(f"==> round {rnd}/{self.a.rounds}: {workload} via {chain}: {result}",
                          file=sys.stderr, flush=True)
        return 1 if self.failed else 0


def stop(proc):
    """SIGTERM first (the Celery workload then stops its worker), SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    # bench/wan.sh stops us with SIGTERM: unwind, so the running workload is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser()
    p.add_argument("--plan", required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--chains", required=True, help="comma-separated, in the order of round 1")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workdir", required=True)
    p.add_argument("--python", required=True, help="Python with psycopg 3 and redis-py")
    p.add_argument("--celery-python", required=True, help="Python with Celery and SQLAlchemy")
    sys.exit(Driver(p.parse_args()).run())


if __name__ == "__main__":
    main()
