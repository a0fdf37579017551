"""Quick checks of the topology, run while the fleets start: isolation of the namespaces, a
round trip through the sidecar, the `direct` path through the router (rediss:// and libpq 17
sslnegotiation=direct, no sidecar), and a PostgreSQL SSLRequest to the router not routed."""
import os
from concurrent.futures import ThreadPoolExecutor

from procs import Failure, run
from topology import BARE_IP, BARE_REDIS_TLS_PORT, PG_HOST, PG_PORT, REDIS_HOST, ROUTER_IP

HERE = os.path.dirname(os.path.abspath(__file__))

CONNECT = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1.5).close()
        print(target, "open")
    except OSError:
        print(target, "closed")
"""

REDIS_DIRECT = """
import sys, redis
pki = sys.argv[2]
r = redis.Redis(host=sys.argv[1], port=443, ssl=True, ssl_ca_certs=pki + "/ca.crt",
                ssl_certfile=pki + "/client.crt", ssl_keyfile=pki + "/client.key",
                socket_timeout=10)
print("ping", r.ping(), "set", r.set("chaos:direct", "yes"), r.get("chaos:direct").decode())
"""


def isolation(lab):
    want = {f"{ROUTER_IP}:443": "open", f"{BARE_IP}:{BARE_REDIS_TLS_PORT}": "open",
            f"{BARE_IP}:{PG_PORT}": "open"}
    for host, port in [(ROUTER_IP, 8501), (ROUTER_IP, 6379), (ROUTER_IP, PG_PORT),
                       (BARE_IP, 6379), (BARE_IP, 443)]:
        want[f"{host}:{port}"] = "closed"
    out = run([lab.python, "-c", CONNECT, *want], ns=lab.topo.priv).stdout.split("\n")
    got = dict(line.split() for line in out if line)
    wrong = {t: got.get(t) for t, w in want.items() if got.get(t) != w}
    if wrong:
        raise Failure(f"isolation: from the private namespace {wrong} (want {want})")
    allowed = {f"{ROUTER_IP}:443", f"{BARE_IP}:6379", f"{BARE_IP}:{BARE_REDIS_TLS_PORT}",
               f"{BARE_IP}:{PG_PORT}"}
    listeners = run(["ss", "-Hltn"], ns=lab.topo.pub).stdout.split("\n")
    exposed = {line.split()[3] for line in listeners if line.strip()}
    extra = sorted(a for a in exposed if not a.startswith(("127.0.0.1:", "[::1]:"))
                   and a not in allowed)
    if extra:
        raise Failure(f"isolation: public listeners outside loopback besides the router and "
                      f"the bare baseline's TLS ports: {extra}")
    return "isolation: private reaches only the router's :443 (and the bare TLS ports)"


def smoke(lab):
    got = run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], ns=lab.topo.priv,
              check=False).stdout.strip()
    if got != "PONG":
        raise Failure(f"redis-cli PING through the sidecar answered {got!r}",
                      [lab.sidecar.proc.log])
    got = run(["psql", "postgresql://postgres@127.0.0.1:5432/chaos_snigate", "-XAtc",
               "select 40 + 2"], ns=lab.topo.priv, check=False,
              env=dict(os.environ, PGCONNECT_TIMEOUT="10")).stdout.strip()
    if got != "42":
        raise Failure(f"psql through the sidecar answered {got!r}", [lab.sidecar.proc.log])
    return "smoke: redis-cli PING and psql SELECT through sidecar -> router -> gateway"


def direct(lab):
    pki = lab.pki["pki"]
    got = run([lab.direct_python, "-c", REDIS_DIRECT, REDIS_HOST, pki],
              ns=lab.topo.priv).stdout.strip()
    if got != "ping True set True yes":
        raise Failure(f"rediss:// through the router: {got!r}")
    conninfo = (f"host={PG_HOST} port=443 sslmode=verify-full sslrootcert={pki}/ca.crt "
                f"sslcert={pki}/client.crt sslkey={pki}/client.key user=postgres "
                "dbname=chaos_snigate")
    got = run([lab.direct_python, os.path.join(HERE, "pg_direct.py"), conninfo],
              ns=lab.topo.priv).stdout.split("\n")
    if got[:3] != ["libpq>=17 True", "ssl_in_use True", "row direct 42 postgres"]:
        raise Failure(f"libpq sslnegotiation=direct through the router: {got}")
    return "direct: redis-py rediss:// and libpq 17 sslnegotiation=direct through the router"


def sslrequest(lab):
    probe = os.path.join(HERE, "sslrequest_probe.py")
    gw = lab.deploy.serving[0]
    got = run([lab.python, probe, "127.0.0.1", str(gw.port), "10"], ns=lab.topo.pub).stdout
    if got.strip() != "answer: S":
        raise Failure(f"the gateway answered an SSLRequest with {got.strip()!r}, expected S")
    got = run([lab.python, probe, PG_HOST, "443", "20"], ns=lab.topo.priv).stdout.strip()
    if got in ("answer: S", "answer: timeout"):
        raise Failure(f"a PostgreSQL SSLRequest to the router got {got!r}: routed or hung")
    logs = "".join(open(p, errors="replace").read() for p in lab.router.logs())
    if "public_ssl be_no_sni/fe_no_sni" not in logs:
        raise Failure("HAProxy's log does not show the SSLRequest going to be_no_sni",
                      lab.router.logs())
    psql = run(["psql", f"host={PG_HOST} port=443 sslmode=require user=postgres "
                "dbname=chaos_snigate", "-XAtc", "select 1"], ns=lab.topo.priv, check=False,
               env=dict(os.environ, PGCONNECT_TIMEOUT="20"))
    if psql.returncode == 0:
        raise Failure("psql (SSLRequest first) got through the router")
    return f"sslrequest: a PostgreSQL SSLRequest to the router is not routed ({got})"


def quick_checks(lab):
    """Run every check at once (the slow ones wait on HAProxy's 5 s inspect delay)."""
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(check, lab) for check in (isolation, smoke, direct, sslrequest)]
        return [f.result() for f in futures]
