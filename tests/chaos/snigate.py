"""The snigate processes under test: gateway replicas (a Deployment) and the worker's sidecar.

Timings. OpenShift (openshift/gateway-config.yaml, gateway-deployment.yaml): shutdown_delay
5 s, drain 30 s, terminationGracePeriodSeconds 45, i.e. 1 : 6 : 9. The suite divides all three
by 5 and keeps the ratios: shutdown_delay 1 s, drain 6 s, grace 9 s. The sidecar's drain is
3 s, so a sidecar restart (drain + start) stays within the 5 s the targets assume. The
sidecar keeps two warm connections per tunnel, so every fault also hits warm connections
(waiting, being taken, sent GOAWAY by a draining gateway, cut by the router).
"""
import json
import os
import signal
import time
import urllib.request

from backends import CLIENT_NAME
from procs import Failure, wait_until
from topology import PG_HOST, REDIS_HOST

SHUTDOWN_DELAY = 1.0
DRAIN = 6.0
GRACE = 9.0
SIDECAR_DRAIN = 3.0
TIMEOUT = 60

GATEWAY_CONFIG = """\
listen: 127.0.0.1:{port}
admin: 127.0.0.1:{admin}
tls:
  cert: {pki}/server.crt
  key: {pki}/server.key
  client_ca: {pki}/ca.crt
timeouts:
  handshake: 10s
  connect: 5s
  shutdown_delay: {delay}s
  drain: {drain}s
routes:
  - name: redis
    server_names: [{redis_host}]
    protocol: redis
    backend: 127.0.0.1:6379
    allow: [dns:{client}]
  - name: postgres
    server_names: [{pg_host}]
    protocol: postgres
    backend: 127.0.0.1:5432
    allow: [dns:{client}]
"""

SIDECAR_CONFIG = """\
admin: 127.0.0.1:9091
tls:
  ca: {pki}/ca.crt
  cert: {pki}/client.crt
  key: {pki}/client.key
timeouts:
  handshake: 10s
  connect: 5s
  drain: {drain}s
tunnels:
  - name: redis
    listen: 127.0.0.1:6379
    protocol: redis
    connect: {redis_host}:443
    warm: 2
  - name: postgres
    listen: 127.0.0.1:5432
    protocol: postgres
    connect: {pg_host}:443
    warm: 2
"""


def http_status(executor, url, timeout=2.0):
    """GET `url` from inside a namespace (through its executor); the HTTP status or None."""
    def get():
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None
    return executor.submit(get).result(timeout + 5)


def json_events(log, keys=("draining", "drain period over", "stopped")):
    """The JSON log lines whose message mentions one of `keys` (the stop sequence)."""
    out = []
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("{") and any(k in line for k in keys):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


class Replica:
    """One gateway pod: its number, ports, process, and its stop (SIGTERM to exit)."""

    def __init__(self, n, port, admin, proc):
        self.n, self.port, self.admin, self.proc = n, port, admin, proc
        self.name = f"gw{n}"
        self.sigterm_at = None

    def drain_record(self):
        """How the stop went: seconds from SIGTERM to exit, killed at grace, the log's counts."""
        events = json_events(self.proc.log)
        open_at_drain = next((e.get("fields", e).get("open") for e in events
                              if "draining" in json.dumps(e)), None)
        forced = next((e.get("fields", e).get("open") for e in events
                       if "drain period over" in json.dumps(e)), 0)
        took = (self.proc.ended or time.time()) - self.sigterm_at
        return {"replica": self.name, "seconds": round(took, 2), "rc": self.proc.returncode,
                "killed": self.proc.returncode == -signal.SIGKILL, "open_at_drain": open_at_drain,
                "forced_closed": forced, "within_grace": took <= GRACE + 0.5
                and self.proc.returncode == 0}


class Deployment:
    """Gateway replicas. Each new replica gets fresh ports, like a new pod gets a new IP."""

    def __init__(self, sup, ns, state, bin_path, pki, executor):
        self.sup, self.ns, self.state, self.bin, self.pki = sup, ns, state, bin_path, pki
        self.executor = executor
        self.serving = []
        self.count = 0

    def spawn(self):
        """Start a replica and wait until its /readyz answers 200 (the readiness probe)."""
        self.count += 1
        n = self.count
        port, admin = 8500 + n, 9500 + n
        cfg = os.path.join(self.state, f"gateway.{n}.yaml")
        with open(cfg, "w") as f:
            f.write(GATEWAY_CONFIG.format(port=port, admin=admin, pki=self.pki,
                                          delay=int(SHUTDOWN_DELAY), drain=int(DRAIN),
                                          redis_host=REDIS_HOST, pg_host=PG_HOST,
                                          client=CLIENT_NAME))
        proc = self.sup.start(f"gateway.{n}", self.ns,
                              [self.bin, "gateway", "--config", cfg, "--log-format", "json"],
                              env=dict(os.environ, RUST_LOG="info"))
        replica = Replica(n, port, admin, proc)
        wait_until(f"{replica.name} ready (/readyz 200)",
                   lambda: http_status(self.executor, f"http://127.0.0.1:{admin}/readyz") == 200,
                   TIMEOUT, proc, interval=0.05)
        self.serving.append(replica)
        return replica

    def terminate(self, replica):
        """SIGTERM: the kubelet stopping the pod. The replica leaves the serving set."""
        replica.sigterm_at = time.time()
        replica.proc.send(signal.SIGTERM)
        self.serving.remove(replica)

    def await_exit(self, replica):
        """Wait up to the grace period, then SIGKILL like the kubelet; the drain record."""
        left = GRACE - (time.time() - replica.sigterm_at)
        if not replica.proc.wait(max(0.0, left)):
            replica.proc.kill_group()
            replica.proc.wait(5)
        return replica.drain_record()


class Sidecar:
    """The sidecar in the private namespace, on 127.0.0.1:6379 and :5432."""

    def __init__(self, sup, ns, state, bin_path, pki, executor):
        self.sup, self.ns, self.bin, self.executor = sup, ns, bin_path, executor
        self.cfg = os.path.join(state, "sidecar.yaml")
        with open(self.cfg, "w") as f:
            f.write(SIDECAR_CONFIG.format(pki=pki, drain=int(SIDECAR_DRAIN),
                                          redis_host=REDIS_HOST, pg_host=PG_HOST))
        self.proc = None
        self.runs = 0

    def start(self):
        self.runs += 1
        self.proc = self.sup.start(f"sidecar.{self.runs}", self.ns,
                                   [self.bin, "sidecar", "--config", self.cfg,
                                    "--log-format", "json"],
                                   env=dict(os.environ, RUST_LOG="info"))
        wait_until("sidecar listening on both tunnels", self.listening, TIMEOUT, self.proc,
                   interval=0.05)

    def listening(self):
        with open(self.proc.log, errors="replace") as f:
            text = f.read()
        return all(f'"tunnel":"{t}"' in text and "listening" in text for t in ("redis", "postgres"))

    def stop(self):
        took = self.proc.stop(signal.SIGTERM, SIDECAR_DRAIN + 10)
        if self.proc.returncode != 0:
            raise Failure(f"the sidecar exited {self.proc.returncode} on SIGTERM", [self.proc.log])
        return took
