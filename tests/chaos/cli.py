"""The chaos suite: a real Celery fleet through router -> two gateway replicas -> Redis and
PostgreSQL while the path is restarted, reloaded and partitioned; the same faults against a
bare baseline (no snigate); everything counted and held against the targets (targets.py).

  cli.py                 the short run (scripts/test.sh): one fault of each kind, asserts
  cli.py --soak          the soak: random faults for --minutes (30), seed printed; writes
                         tests/chaos/results/<timestamp>.md and .png (or --report PATH.md)
  --seed N               replay a run's random choices    --pin   add the celery 5.7.0 check
  --keep                 keep the state directory (logs) also when everything passed

Needs root (network namespaces, nftables). SNIGATE_BIN names the binary under test (default:
target/debug/snigate, built first). Logs stay in the state directory named on failure.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from accounting import load_executions, load_sent
from checks import quick_checks
from fleet import interpreter
from lab import PATHS, Lab
from pin import PinCheck
from plot import plot
from procs import Failure
from report import kinds_table, loss_details, render
from runner import collect, inject, say, settle, short_plan, soak_plan, wait_progress

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RATE = 6.0  # tasks per second and path


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--soak", action="store_true")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--report")
    p.add_argument("--pin", action="store_true")
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


def snigate_binary():
    if os.environ.get("SNIGATE_BIN"):
        return os.path.abspath(os.environ["SNIGATE_BIN"])
    say("cargo build (SNIGATE_BIN not set)")
    subprocess.run(["cargo", "build", "--quiet"], cwd=REPO, check=True)
    return os.path.join(REPO, "target", "debug", "snigate")


def pg_bindir():
    found = subprocess.run(["bash", "-c", f"source {REPO}/scripts/lib.sh && pg_bindir"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise Failure("no PostgreSQL server binaries (run scripts/install-deps.sh)")
    return found.stdout.strip()


def run(lab, args, rng, seed):
    say(f"lab in {lab.state}: namespaces, Redis, PostgreSQL, 2 gateways, router, sidecar")
    lab.up()
    lab.start_fleets()
    pin = None
    if args.pin or args.soak:
        celery57 = interpreter(os.path.join(REPO, ".venv-celery57"))
        pin = PinCheck(lab, {"5.7-bare": celery57, "5.6-bare": lab.python,
                             "5.7-snigate": celery57})
        lab.pin_workers = pin.workers
    for line in quick_checks(lab):
        say(line)
    lab.wait_fleets(pin.queues() if pin else ())
    if pin:
        pin.wait_ready()
    if not wait_progress(lab, PATHS, need=20, timeout=60):
        raise Failure("the fleets did not execute their first 20 tasks within 60 s",
                      [w.proc.log for w in lab.workers()])
    plan = soak_plan(rng, args.minutes) if args.soak else short_plan(rng)
    lab.quiet = not args.soak
    say(f"{len(plan)} faults, seed {seed}")
    t0 = time.time()
    faults = inject(lab, plan, rng, args.soak)
    lab.sample(steady=True)
    if pin:
        pin.result = pin.verdict(sum(f["kind"] == "redis-restart" for f in faults))
        say(pin.result[1])
    lab.producer.stop()
    sent, _ = load_sent(lab.producer.sent_log)
    if not settle(lab, sent):
        say("not every task ran and stored within the settle time (counted below)")
    lab.sample(steady=True)
    for fleet in lab.fleets.values():
        fleet.stop()
    save_raw(lab, faults)
    data, failures = collect(lab, faults)
    data["worker_logs"] = {p: [w.proc.log for w in lab.fleets[p].workers] for p in PATHS}
    if pin and pin.result and not pin.result[0]:
        failures.append(pin.result[1])
    print(kinds_table(data["kinds"]))
    for path, (windows, rows) in data["per_path"].items():
        for line in loss_details(path, windows, rows, data["worker_logs"][path], limit=5):
            print(line)
    for f in failures + data["resource_failures"] * args.soak:
        print(f"chaos: target missed: {f}")
    for event in data["deaths"] + data["stalls"]:
        print(f"chaos: {describe(event)}")
    write_report(args, data, faults, t0, seed, lab,
                 failures + data["resource_failures"] * args.soak, pin)
    return not failures and not (args.soak and data["resource_failures"])


def describe(event):
    """One line for a worker death (its log's reason) or stall (how long it executed nothing)."""
    at = time.strftime("%H:%M:%S", time.localtime(event["t"]))
    if "end" not in event:
        return f"worker {event['worker']} died at {at}: {event['cause']}"
    end = f"{event['end'] - event['t']:.0f} s" if event["end"] else "the rest of the run"
    return (f"worker {event['worker']} alive but executed nothing from {at} for {end} while "
            "tasks were sent (its consumer gone; see its log around then)")


def save_raw(lab, faults):
    """What only memory holds (faults, samples, deaths, stalls), kept in the state directory
    before anything else can fail."""
    with open(os.path.join(lab.state, "run.json"), "w") as f:
        json.dump({"faults": faults, "samples": lab.samples, "steady": lab.steady,
                   "deaths": lab.deaths(), "stalls": lab.stalls()}, f)


def write_report(args, data, faults, t0, seed, lab, failures, pin):
    when = time.strftime("%Y%m%d-%H%M%S", time.localtime(t0))
    path = args.report or (os.path.join(HERE, "results", f"{when}.md") if args.soak
                           else os.path.join(lab.state, "report.md"))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    png = os.path.splitext(path)[0] + ".png"
    meta = {"when": when, "seed": seed, "mode": "soak" if args.soak else "short",
            "faults": len(faults), "minutes": round((time.time() - t0) / 60, 1),
            "binary": lab.bin, "rate": f"{RATE}/s per path"}
    if pin and pin.result:
        meta["pin"] = pin.result[1]
    text = render(data, faults, t0, meta, failures, os.path.basename(png))
    with open(path, "w") as f:  # paths relative to the repository and the state directory
        f.write(text.replace(REPO + "/", "").replace(lab.state, "<state>"))
    sent = load_sent(lab.producer.sent_log)[0]
    sends = {f"sent {q}": list(sent[q].values()) for q in lab.queues}
    runs = {f"executed {p}": [t for ts in load_executions(
        [w.exec_log for w in lab.fleets[p].workers]).values() for t in ts] for p in PATHS}
    plot(png, faults, sends, runs, lab.samples, t0)
    say(f"report: {path}")


def main(argv):
    args = parse(argv)
    if os.geteuid() != 0:
        sys.exit("chaos: needs root (network namespaces, nftables); run it with sudo")
    seed = args.seed if args.seed is not None else random.randrange(2 ** 32)
    state = tempfile.mkdtemp(prefix="snigate-chaos.")
    os.chmod(state, 0o755)  # the postgres user runs PostgreSQL from here
    ok, started = False, time.time()
    lab = None

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        lab = Lab(state, snigate_binary(), pg_bindir(),
                  interpreter(os.path.join(REPO, ".venv-topology")),
                  interpreter(os.path.join(REPO, ".venv")), RATE)
        ok = run(lab, args, random.Random(seed), seed)
    except Failure as e:
        print(f"chaos: FAILED: {e}", file=sys.stderr)
        for log in e.logs:
            print(f"---- last lines of {log} ----\n{tail(log)}----", file=sys.stderr)
    except KeyboardInterrupt as e:
        print(f"chaos: interrupted ({e or 'SIGINT'})", file=sys.stderr)
    finally:
        if lab:
            lab.down()
        if ok and not args.keep:
            shutil.rmtree(state, ignore_errors=True)
        else:
            print(f"chaos: logs and state kept in {state}", file=sys.stderr)
    say(f"chaos: {'passed' if ok else 'FAILED'} in {time.time() - started:.0f} s (seed {seed})")
    return 0 if ok else 1


def tail(log, lines=30):
    try:
        with open(log, errors="replace") as f:
            return "".join(line[:400] for line in f.readlines()[-lines:])
    except OSError as e:
        return f"({e})\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
