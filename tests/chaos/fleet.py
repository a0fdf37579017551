"""The Celery fleets: per path (snigate, bare) a prefork worker and a threads worker, each with
its own log and side-channel execution log, plus the producer that feeds both queues.

  snigate  workers in the private namespace, unchanged URLs through the sidecar:
           redis://localhost:6379/0, db+postgresql+psycopg2://postgres@localhost:5432/chaos_snigate
  bare     workers in the private namespace straight to Redis and PostgreSQL over their own
           TLS (rediss:// with a client certificate; libpq sslmode=verify-full), no snigate
"""
import os
import re
import signal
import sys
import time

from procs import Failure, wait_until
from topology import BARE_PG_HOST, BARE_REDIS_HOST, BARE_REDIS_TLS_PORT, PG_PORT

HERE = os.path.dirname(os.path.abspath(__file__))
POOLS = {"prefork": ["--pool", "prefork", "--concurrency", "2"],
         "threads": ["--pool", "threads", "--concurrency", "4"]}
TIMEOUT = 90
RECEIVED = re.compile(r"Task chaos\.work\[([0-9a-f-]+)\] received")


def path_urls(path, bare_pki):
    """(broker URL, result backend URL) of a fleet."""
    if path == "snigate":
        return ("redis://localhost:6379/0",
                "db+postgresql+psycopg2://postgres@localhost:5432/chaos_snigate")
    tls = (f"sslmode=verify-full&sslrootcert={bare_pki}/ca.crt&sslcert={bare_pki}/client.crt"
           f"&sslkey={bare_pki}/client.key&connect_timeout=10")
    return (f"rediss://{BARE_REDIS_HOST}:{BARE_REDIS_TLS_PORT}/0",
            f"db+postgresql+psycopg2://postgres@{BARE_PG_HOST}:{PG_PORT}/chaos_bare?{tls}")


# A live worker that executed nothing this long while tasks were sent: its consumer is gone.
# Above what a 10 s partition costs by itself (both paths resume 12-20 s after it starts, as
# TCP's retransmission backoff decides), so only longer silences count.
STALL_S = 30.0


class Worker:
    """One Celery worker process; `death` is filled in when it exits on its own, `stalls`
    holds the periods in which it lived but executed nothing (its consumer gone)."""

    def __init__(self, path, pool, proc, exec_log):
        self.path, self.pool, self.proc, self.exec_log = path, pool, proc, exec_log
        self.name = f"{path}-{pool}"
        self.death = None
        self.stopping = False
        self.stalls = []
        self.size, self.grew = 0, time.time()

    def check_progress(self, sending):
        """Open a stall after STALL_S without an execution while `sending`; close it on the
        next execution."""
        now = time.time()
        size = os.path.getsize(self.exec_log) if os.path.exists(self.exec_log) else 0
        open_stall = self.stalls and self.stalls[-1]["end"] is None
        if size != self.size:
            self.size, self.grew = size, now
            if open_stall:
                self.stalls[-1]["end"] = now
        elif not sending:
            self.grew = now
        elif now - self.grew >= STALL_S and not open_stall and self.proc.alive():
            self.stalls.append({"worker": self.name, "path": self.path, "t": self.grew,
                                "end": None})

    def check_alive(self):
        """Record a death (time, status, the log's reason) the first time it is seen."""
        if self.death is None and not self.stopping and not self.proc.alive():
            self.death = {"worker": self.name, "path": self.path, "t": self.proc.ended,
                          "rc": self.proc.returncode, "cause": death_cause(self.proc.log)}
        return self.death is None


def death_cause(log):
    """The worker log's 'Unrecoverable error' line and the last exception line under it."""
    try:
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return "(no log)"
    for i, line in enumerate(lines):
        if "Unrecoverable error" in line:
            tail = [x for x in lines[i + 1:i + 80] if re.match(r"^[A-Za-z_.]*(Error|Exception)", x)]
            return line.strip()[-200:] + (f" / {tail[-1].strip()}" if tail else "")
    return lines[-1].strip()[-300:] if lines else "(empty log)"


class Fleet:
    """The two workers of one path."""

    def __init__(self, path, sup, ns, state, bare_pki, python):
        self.path, self.sup, self.ns, self.state = path, sup, ns, state
        broker, backend = path_urls(path, bare_pki)
        self.env = dict(os.environ, PYTHONPATH=HERE, CHAOS_BROKER_URL=broker,
                        CHAOS_RESULT_BACKEND=backend, CHAOS_TLS_DIR=bare_pki)
        self.python = python
        self.workers = []

    def start(self):
        for pool, args in POOLS.items():
            exec_log = os.path.join(self.state, f"exec.{self.path}-{pool}.log")
            env = dict(self.env, CHAOS_EXEC_LOG=exec_log)
            proc = self.sup.start(f"worker.{self.path}-{pool}", self.ns, [
                self.python, "-m", "celery", "-A", "fleet_app", "worker", "--loglevel", "INFO",
                "-n", f"{self.path}-{pool}@chaos", "-Q", f"chaos.{self.path}",
                "--prefetch-multiplier", "4", "--without-gossip", "--without-mingle",
                "--without-heartbeat", *args], env=env)
            self.workers.append(Worker(self.path, pool, proc, exec_log))

    def wait_ready(self):
        for w in self.workers:
            wait_until(f"Celery worker {w.name} ready",
                       lambda w=w: f"{w.name}@chaos ready" in open(w.proc.log,
                                                                   errors="replace").read(),
                       TIMEOUT, w.proc, interval=0.2)

    def stop(self):
        """Warm shutdown (SIGTERM): running tasks finish and store their results."""
        for w in self.workers:
            w.check_alive()
            w.stopping = True
            w.proc.send(signal.SIGTERM)
        for w in self.workers:
            if not w.proc.wait(30):
                w.proc.kill_group()

    def received(self):
        """task id -> how many times a worker log says it was received."""
        counts = {}
        for w in self.workers:
            with open(w.proc.log, errors="replace") as f:
                for m in RECEIVED.finditer(f.read()):
                    counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        return counts


class Producer:
    """producer.py in the public namespace, straight to Redis; paused through a file."""

    def __init__(self, sup, ns, state, python, rate, queues):
        self.sent_log = os.path.join(state, "sent.log")
        self.pause_file = os.path.join(state, "producer.pause")
        env = dict(os.environ, PYTHONPATH=HERE, CHAOS_BROKER_URL="redis://127.0.0.1:6379/0")
        self.proc = sup.start("producer", ns, [python, os.path.join(HERE, "producer.py"),
                                               str(rate), self.sent_log, self.pause_file,
                                               *queues], env=env)

    def pause(self):
        open(self.pause_file, "w").close()
        time.sleep(0.3)  # one send already under way finishes

    def sending(self):
        return self.proc.alive() and not os.path.exists(self.pause_file)

    def resume(self):
        if os.path.exists(self.pause_file):
            os.unlink(self.pause_file)

    def stop(self):
        self.proc.stop(signal.SIGTERM, 10)
        if self.proc.returncode not in (0, -signal.SIGTERM):
            raise Failure(f"the producer exited {self.proc.returncode}", [self.proc.log])


def interpreter(venv):
    """The venv's python (the topology venv by default: celery 5.6)."""
    path = os.path.join(venv, "bin", "python")
    return path if os.path.exists(path) else sys.executable
