"""Why the fleet pins celery<5.7: celery 5.7.0 workers beside a 5.6 one, all fed by the
producer through the whole run. "5.7-bare" and "5.6-bare" sit in the public namespace straight
on Redis (no snigate: every Redis restart hits them), "5.7-snigate" sits beside the fleet
behind the sidecar. The issue saw 5.7.0's consumer die after a broker connection loss, also on
bare Redis (AttributeError: 'NoneType' object has no attribute 'hostname', a transport that
collect() had detached); the verdict says whether this run saw it, and fails only when the
5.6 worker, the one the fleet relies on, died or stalled.
"""
import os

from fleet import HERE, POOLS, Worker
from procs import wait_until

SIGNATURE = "'NoneType' object has no attribute 'hostname'"
EVERY = 3  # the producer feeds each pin queue on every third tick


class PinCheck:
    def __init__(self, lab, venvs):
        self.lab = lab
        self.workers = []
        self.labels = list(venvs)
        self.result = None
        for label, python in venvs.items():
            path = label.split("-")[1]
            ns = lab.topo.pub if path == "bare" else lab.topo.priv
            broker = "redis://127.0.0.1:6379/0" if path == "bare" else "redis://localhost:6379/0"
            exec_log = os.path.join(lab.state, f"exec.pin-{label}.log")
            env = dict(os.environ, PYTHONPATH=HERE, CHAOS_BROKER_URL=broker,
                       CHAOS_EXEC_LOG=exec_log)
            env.pop("CHAOS_RESULT_BACKEND", None)
            proc = lab.sup.start(f"worker.pin-{label}", ns, [
                python, "-m", "celery", "-A", "fleet_app", "worker", "--loglevel", "INFO",
                "-n", f"pin-{label}@chaos", "-Q", f"pin.{label}", "--without-gossip",
                "--without-mingle", "--without-heartbeat", *POOLS["threads"]], env=env)
            self.workers.append(Worker(f"pin-{label}", "threads", proc, exec_log))

    def queues(self):
        """The producer's queue arguments: QUEUE:EVERY."""
        return [f"pin.{label}:{EVERY}" for label in self.labels]

    def wait_ready(self):
        for w in self.workers:
            wait_until(f"celery worker {w.path} ready",
                       lambda w=w: f"{w.path}@chaos ready" in open(
                           w.proc.log, errors="replace").read(), 90, w.proc, interval=0.2)

    def verdict(self, redis_restarts):
        """(ok, what happened to each worker): ok unless the 5.6 worker died or stalled."""
        lines, ok = [], True
        for w in self.workers:
            w.check_alive()
            with open(w.proc.log, errors="replace") as f:
                said = SIGNATURE in f.read()
            with open(w.proc.log, errors="replace") as f:
                head = f.read(3000)
            version = head[head.find(" v5.") + 2:].split(" ", 1)[0] if " v5." in head else "?"
            what = (f"died ({w.death['cause']})" if w.death else
                    f"stalled {len(w.stalls)}x" if w.stalls else "survived")
            lines.append(f"celery {version} {w.path[len('pin-'):]}: {what}"
                         + ("; log has AttributeError " + SIGNATURE if said else ""))
            if w.path == "pin-5.6-bare" and (w.death or w.stalls):
                ok = False
        return ok, f"pin ({redis_restarts} Redis restarts): " + "; ".join(lines)
