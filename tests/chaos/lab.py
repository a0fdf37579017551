"""The lab: the topology, the servers, the snigate processes and the fleets, brought up in
order and torn down whatever happens. A sampler thread watches the workers (a death is
recorded when first seen) and reads RSS and open fds of the gateways and the sidecar from /proc.
"""
import os
import threading
import time
import urllib.request

from backends import Postgres, Redis, make_pki
from fleet import Fleet, Producer
from procs import Supervisor, netns_executor
from router import Router
from snigate import Deployment, Sidecar, http_status
from topology import Topology

REPLICAS = 2
SAMPLE_EVERY = 1.0
PATHS = ("snigate", "bare")


def proc_usage(pid):
    """(RSS KiB, open fds) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None


def open_connections(executor, admin_port):
    """Sum of snigate_connections_open over routes/tunnels, from /metrics; None if unknown."""
    def get():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("snigate_connections_open{"))
    return executor.submit(get).result(10)


class Lab:
    def __init__(self, state, bin_path, pg_bindir, python, direct_python, rate):
        self.state, self.bin, self.pg_bindir, self.python = state, bin_path, pg_bindir, python
        self.direct_python = direct_python  # psycopg 3 with libpq >= 17, redis-py
        self.rate = rate
        self.sup = Supervisor(state)
        self.topo = Topology(str(os.getpid()))
        self.queues = [f"chaos.{p}" for p in PATHS]
        self.quiet = False
        self.fleets, self.samples, self.steady = {}, [], []
        self.pin_workers = []  # watched like the fleets' workers, counted apart
        self.stop_sampler = threading.Event()
        self.sampler = None
        self.pub_exec = self.priv_exec = None

    def up(self):
        self.topo.up()
        self.pub_exec = netns_executor(self.topo.pub)
        self.priv_exec = netns_executor(self.topo.priv)
        self.pki = make_pki(self.bin, self.state)
        self.redis = Redis(self.sup, self.topo.pub, self.state, self.pki["bare-pki"])
        self.redis.start()
        self.pg = Postgres(self.sup, self.topo.pub, self.state, self.pg_bindir,
                           self.pki["bare-pki"])
        self.pg.init([f"chaos_{p}" for p in PATHS])
        self.deploy = Deployment(self.sup, self.topo.pub, self.state, self.bin,
                                 self.pki["pki"], self.pub_exec)
        for _ in range(REPLICAS):
            self.deploy.spawn()
        self.router = Router(self.sup, self.topo.pub, self.state)
        self.router.start(self.deploy.serving)
        self.sidecar = Sidecar(self.sup, self.topo.priv, self.state, self.bin, self.pki["pki"],
                               self.priv_exec)
        self.sidecar.start()

    def start_fleets(self):
        for path in PATHS:
            self.fleets[path] = Fleet(path, self.sup, self.topo.priv, self.state,
                                      self.pki["bare-pki"], self.python)
            self.fleets[path].start()

    def wait_fleets(self, extra_queues=()):
        for fleet in self.fleets.values():
            fleet.wait_ready()
        self.producer = Producer(self.sup, self.topo.pub, self.state, self.python, self.rate,
                                 self.queues + list(extra_queues))
        self.sampler = threading.Thread(target=self.sample_loop, daemon=True)
        self.sampler.start()

    def workers(self):
        return [w for f in self.fleets.values() for w in f.workers]

    def watched(self):
        """(name, pid, executor, admin port) of every gateway replica and the sidecar."""
        out = [(r.name, r.proc.pid, self.pub_exec, r.admin) for r in self.deploy.serving]
        if self.sidecar.proc.alive():
            out.append((f"sidecar{self.sidecar.runs}", self.sidecar.proc.pid, self.priv_exec,
                        9091))
        return out

    def sample(self, steady=False):
        t = time.time()
        for name, pid, executor, admin in self.watched():
            usage = proc_usage(pid)
            if usage is None:
                continue
            row = {"t": t, "name": name, "pid": pid, "rss_kib": usage[0], "fds": usage[1]}
            if steady:
                row["conns"] = open_connections(executor, admin)
                self.steady.append(row)
            self.samples.append(row)

    def sample_loop(self):
        while not self.stop_sampler.wait(SAMPLE_EVERY):
            sending = self.producer.sending()
            for w in self.workers() + self.pin_workers:
                if w.check_alive() and not w.stopping:
                    w.check_progress(sending)
            try:
                self.sample()
            except Exception:  # a process may go away between listing and reading it
                pass

    def stalls(self):
        return [s for w in self.workers() for s in w.stalls]

    def deaths(self):
        for w in self.workers():
            w.check_alive()
        return [w.death for w in self.workers() if w.death]

    def ready(self, replica):
        return http_status(self.pub_exec, f"http://127.0.0.1:{replica.admin}/readyz") == 200

    def down(self):
        self.stop_sampler.set()
        if self.sampler:
            self.sampler.join(5)
        try:
            self.sup.cleanup()
        finally:
            self.topo.down()
            for ex in (self.pub_exec, self.priv_exec):
                if ex:
                    ex.shutdown(wait=False)
