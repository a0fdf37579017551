"""The router: HAProxy on 10.77.0.1:443, configured like the OpenShift router.

When the gateway's endpoints change, the suite rewrites the config and reloads HAProxy the way
openshift/router's reload-haproxy script does: a new process with `-x <stats socket>` (it takes
over the listening sockets) and `-sf <old pids>` (the old processes stop listening and finish
their open connections). That, not the runtime API, is what a default OpenShift router does on
an endpoint change (its dynamic config manager is off by default), so a rolling update here
meets the same reloads. A router restart is harder: every HAProxy process gets SIGTERM (open
connections are cut) and a fresh one starts.
"""
import os
import re
import signal
import socket
import time

from procs import Failure, run, wait_until
from topology import PG_HOST, REDIS_HOST, ROUTER_IP

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "router-haproxy.cfg")
TIMEOUT = 30


def stats_command(sock_path, command):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(sock_path)
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(data)


class Router:
    """HAProxy processes of the router: the current one and old ones finishing connections."""

    def __init__(self, sup, ns, state):
        self.sup, self.ns, self.state = sup, ns, state
        self.cfg = os.path.join(state, "haproxy.cfg")
        self.sock = os.path.join(state, "haproxy.sock")
        self.procs = []
        self.runs = 0
        with open(os.path.join(state, "os_sni_passthrough.map"), "w") as f:
            f.write("".join(f"^{re.escape(h)}$ 1\n" for h in (REDIS_HOST, PG_HOST)))
        with open(os.path.join(state, "os_tcp_be.map"), "w") as f:
            f.write(f"^{re.escape(REDIS_HOST)}$ be_tcp:chaos:snigate-redis\n"
                    f"^{re.escape(PG_HOST)}$ be_tcp:chaos:snigate-postgres\n")

    def write_config(self, replicas):
        """One server per gateway replica; health checks once there are several (template)."""
        check = " check inter 5000ms" if len(replicas) > 1 else ""
        servers = "".join(f"    server {r.name} 127.0.0.1:{r.port} weight 256{check}\n"
                          for r in replicas).rstrip("\n")
        with open(TEMPLATE) as f:
            text = f.read()
        text = (text.replace("@SERVERS@", servers).replace("@STATE@", self.state)
                .replace("@ROUTER_ADDR@", ROUTER_IP))
        with open(self.cfg, "w") as f:
            f.write(text)
        run(["haproxy", "-c", "-q", "-f", self.cfg])

    def live(self):
        self.procs = [p for p in self.procs if p.alive()]
        return self.procs

    def start(self, replicas, takeover=False):
        self.write_config(replicas)
        self.runs += 1
        argv = ["haproxy", "-db", "-f", self.cfg]
        old = self.live()
        if takeover and old:
            argv += ["-x", self.sock, "-sf", *[str(p.pid) for p in old]]
        proc = self.sup.start(f"haproxy.{self.runs}", self.ns, argv)
        self.procs.append(proc)
        wait_until(f"HAProxy {self.runs} answering on its stats socket",
                   lambda: f"Pid: {proc.pid}\n" in stats_command(self.sock, "show info"),
                   TIMEOUT, proc, interval=0.02)
        return proc

    def reload(self, replicas):
        """Graceful: new process, listeners handed over, old ones finish their connections."""
        t0 = time.time()
        self.start(replicas, takeover=True)
        return time.time() - t0

    def restart(self, replicas):
        """Hard: SIGTERM to every HAProxy process (connections cut), then a fresh one."""
        t0 = time.time()
        for p in self.live():
            p.send(signal.SIGTERM)
        for p in self.live():
            if not p.wait(10):
                raise Failure(f"{p.name} did not exit on SIGTERM", [p.log])
        self.start(replicas)
        return time.time() - t0

    def logs(self):
        return [p.log for p in self.sup.procs if p.name.startswith("haproxy.")]
