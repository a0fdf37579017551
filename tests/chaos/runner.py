"""One chaos run: warm up, inject the planned faults while tasks flow, let the fleet settle,
then count everything and hold it against the targets."""
import time

from accounting import account, by_kind, load_executions, load_results, load_sent, load_seqs
from faults import FAULTS, REPLACING
from targets import TARGETS, check_kind, check_resources

SHORT_ORDER = ["router-reload", "gateway-rolling", "gateway-restart", "sidecar-restart",
               "redis-restart", "postgres-restart", "partition", "router-restart"]
SETTLE_S = 60       # after the last send: visibility timeout 15 s + sweeps + slow recoveries
PROGRESS_S = 30     # short run: how long a path may take to execute again after a fault


def say(msg):
    print(f"==> {msg}", flush=True)


def executed_count(lab, path):
    return sum(len(runs) for runs in load_executions(
        [w.exec_log for w in lab.fleets[path].workers]).values())


def wait_progress(lab, paths, need=5, timeout=PROGRESS_S):
    """Until each path has executed `need` more tasks (the fleet works again), or timeout."""
    start = {p: executed_count(lab, p) for p in paths}
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(executed_count(lab, p) >= start[p] + need for p in paths):
            return True
        time.sleep(0.2)
    return False


def short_plan(rng):
    return [(kind, rng.uniform(0.5, 2.0)) for kind in SHORT_ORDER]


def soak_plan(rng, minutes):
    """(kind, pause before it) until `minutes` are filled; the last quarter leaves out the
    faults that replace gateway or sidecar processes (see faults.REPLACING)."""
    plan, t, end = [], 0.0, minutes * 60
    # Seconds each kind took in a soak (plus the sample before it), so the plan fills `minutes`.
    typical = {"partition": 10.5, "gateway-rolling": 8, "gateway-restart": 7.5,
               "sidecar-restart": 3.5, "redis-restart": 1.5}
    while t < end:
        kinds = list(FAULTS) if t < 0.75 * end else [k for k in FAULTS if k not in REPLACING]
        kind = rng.choice(kinds)
        pause = rng.uniform(1.0, 4.0)
        plan.append((kind, pause))
        t += pause + typical.get(kind, 1)
    return plan


def inject(lab, plan, rng, soak):
    faults = []
    for n, (kind, pause) in enumerate(plan, 1):
        time.sleep(pause)
        lab.sample(steady=True)
        rec = FAULTS[kind](lab, rng)
        faults.append(rec)
        say(f"fault {n}/{len(plan)} {kind}: {rec.get('detail', '')}")
        if not soak:
            paths = rec["paths"]
            if not wait_progress(lab, paths):
                say(f"  the fleet did not execute tasks again within {PROGRESS_S} s after {kind}")
    return faults


def settle(lab, sent):
    """After the producer stopped: until every sent task has run and stored, or SETTLE_S."""
    deadline = time.time() + SETTLE_S
    while time.time() < deadline:
        done = True
        for path, fleet in lab.fleets.items():
            ids = sent.get(f"chaos.{path}", {})
            runs = load_executions([w.exec_log for w in fleet.workers])
            stored = lab.pg.execute(f"chaos_{path}", "select count(*) from celery_taskmeta "
                                    "where status = 'SUCCESS'")[0][0]
            if any(i not in runs for i in ids) or stored < len(ids):
                done = False
        if done:
            return True
        time.sleep(1)
    return False


def collect(lab, faults):
    """Per-path accounting and target verdicts: (report data, failure messages)."""
    sent, failed_sends = load_sent(lab.producer.sent_log)
    seqs = load_seqs(lab.producer.sent_log)
    deaths, stalls = lab.deaths(), lab.stalls()
    per_path, kinds = {}, {}
    for path, fleet in lab.fleets.items():
        logs = [w.exec_log for w in fleet.workers]
        executions = load_executions(logs)
        windows, rows = account(path, sent.get(f"chaos.{path}", {}), executions,
                                fleet.received(), load_results(lab.pg, f"chaos_{path}"),
                                deaths, stalls, faults, seqs)
        per_path[path] = (windows, rows)
        kinds[path] = by_kind(windows, rows)
    failures = []
    for kind in kinds["snigate"]:
        if kind in TARGETS:
            failures += check_kind(kind, kinds["snigate"][kind], kinds["bare"], faults)
    resource_failures, resource_rows = check_resources(lab.steady, faults)
    everything = load_executions([w.exec_log for f in lab.fleets.values() for w in f.workers])
    unsent = sum(1 for i in failed_sends if i in everything)
    return {"per_path": per_path, "kinds": kinds, "deaths": deaths, "stalls": stalls,
            "resource_rows": resource_rows, "resource_failures": resource_failures,
            "failed_sends": len(failed_sends), "failed_sends_executed": unsent}, failures
