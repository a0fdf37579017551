#!/usr/bin/env python3
"""Celery across the WAN (run with the .venv-topology Python: Celery, SQLAlchemy, psycopg2,
psycopg 3). Starts a worker (`--pool threads --concurrency 4`) whose broker and result backend
go through one chain, and plays the producer on the server side: it sends straight to Redis
and learns that a result row was committed from a trigger's NOTIFY on a direct PostgreSQL
connection, so its own timing crosses no link.

  latency: tasks sent one at a time, send -> result row committed (ms)
  burst:   N tasks sent at once, tasks/s until the last result row is committed

Prints one JSON object: {"latency_ms": [...], "burst_tasks_s": x, "burst_n": N}.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

import wan_plan

HERE = Path(__file__).resolve().parent
CHANNEL = "wan_task_done"
SETUP_SQL = f"""
create or replace function wan_task_done() returns trigger language plpgsql as $$
begin
    perform pg_notify('{CHANNEL}', new.task_id);
    return null;
end $$;
drop trigger if exists wan_task_done on celery_taskmeta;
create trigger wan_task_done after insert or update on celery_taskmeta
    for each row when (new.status = 'SUCCESS') execute function wan_task_done();
"""


def prepare_tables(plan):
    """Celery's result tables (as the worker would create them) and the NOTIFY trigger."""
    from celery.backends.database.models import ResultModelBase
    from sqlalchemy import create_engine

    p = wan_plan.direct_pg(plan)
    url = f"postgresql+psycopg2://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"
    engine = create_engine(url, connect_args={"password": p["password"], "sslmode": "disable"})
    ResultModelBase.metadata.create_all(engine)
    engine.dispose()
    with psycopg.connect(autocommit=True, **p) as conn:
        conn.execute(SETUP_SQL)


class Worker:
    """The Celery worker on the client side, its log in `log`."""

    def __init__(self, plan, chain, queue, log):
        broker, ssl = wan_plan.celery_broker(plan, chain)
        env = dict(os.environ, WAN_BROKER=broker, WAN_BROKER_SSL=json.dumps(ssl),
                   WAN_BACKEND=wan_plan.celery_backend(plan, chain),
                   PYTHONPATH=str(HERE))
        cmd = [sys.executable, "-m", "celery", "-A", "wan_celery_app", "worker", "--pool", "threads",
               "--concurrency", "4", "-Q", queue, "-n", f"wan-{chain}@localhost",
               "--without-mingle", "--loglevel", "WARNING"]
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, env=env, cwd=HERE, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(6)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Producer:
    """Sends tasks straight to Redis and waits for their NOTIFY."""

    def __init__(self, plan, queue, worker):
        os.environ.update(WAN_BROKER=wan_plan.direct_broker(plan), WAN_BACKEND="disabled://")
        from wan_celery_app import noop

        self.task, self.queue, self.worker = noop, queue, worker
        self.listen = psycopg.connect(autocommit=True, **wan_plan.direct_pg(plan))
        self.listen.execute(f"listen {CHANNEL}")

    def send(self, i):
        task_id = str(uuid.uuid4())
        self.task.apply_async((i,), queue=self.queue, task_id=task_id)
        return task_id

    def wait_done(self, pending, timeout):
        """Waits until every id in `pending` has been committed; returns {id: commit time}."""
        done = {}
        deadline = time.monotonic() + timeout
        while pending - done.keys():
            if time.monotonic() > deadline or not self.worker.alive():
                tail = Path(self.worker.log).read_text()[-3000:]
                raise RuntimeError(f"{len(pending - done.keys())} task result(s) missing; worker log:\n{tail}")
            for note in self.listen.notifies(timeout=1.0, stop_after=len(pending - done.keys())):
                done.setdefault(note.payload, time.perf_counter())
        return done


def run(plan, chain, n_latency, n_burst, workdir):
    prepare_tables(plan)
    queue = f"wan.{chain}.{uuid.uuid4().hex[:8]}"
    worker = Worker(plan, chain, queue, Path(workdir) / f"celery-{chain}.log")
    try:
        producer = Producer(plan, queue, worker)
        # ready: the worker took tasks and committed their results through the chain
        producer.wait_done({producer.send(-1), producer.send(-2)}, timeout=120)
        latency = []
        for i in range(n_latency):
            t0 = time.perf_counter()
            task_id = producer.send(i)
            latency.append((producer.wait_done({task_id}, timeout=60)[task_id] - t0) * 1000)
        t0 = time.perf_counter()
        ids = {producer.send(i) for i in range(n_burst)}
        done = producer.wait_done(ids, timeout=600)
        burst = n_burst / (max(done.values()) - t0)
    finally:
        worker.stop()
    return {"latency_ms": latency, "burst_tasks_s": burst, "burst_n": n_burst}


def main():
    # stopped with SIGTERM: unwind, so that `run` stops the worker
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser()
    p.add_argument("--plan", required=True)
    p.add_argument("--chain", required=True)
    p.add_argument("--latency-n", type=int, default=15)
    p.add_argument("--burst-n", type=int, default=100)
    p.add_argument("--workdir", required=True)
    a = p.parse_args()
    plan = wan_plan.load(a.plan)
    json.dump(run(plan, a.chain, a.latency_n, a.burst_n, a.workdir), sys.stdout)


if __name__ == "__main__":
    main()
