"""Redis and PostgreSQL in the public namespace, and the certificates everything uses.

Redis keeps its queue across a restart (appendonly, fsync always). Both servers also speak
their own TLS on the bare baseline's address (Redis --tls-port, PostgreSQL ssl=on, client
certificates required), so a worker can reach them without snigate. The suite itself talks
to both over Unix sockets in the state directory: its queries never cross a path under test.
"""
import os
import pwd
import shutil
import signal
import time

import psycopg2
import redis

from procs import run, wait_until
from topology import (BARE_IP, BARE_PG_HOST, BARE_REDIS_HOST, BARE_REDIS_TLS_PORT, PG_HOST,
                      PG_PORT, PRIVATE_IP, REDIS_HOST)

CLIENT_NAME = "worker.chaos.snigate.test"
TIMEOUT = 60


def make_pki(bin_path, state):
    """The gateway's PKI (Route hosts + the worker's client name), the bare servers' PKI and
    the router's default certificate. Returns {name: directory}."""
    dirs = {n: os.path.join(state, n) for n in ("pki", "bare-pki", "router-pki")}
    run([bin_path, "certs", "--out", dirs["pki"], "--server-name", REDIS_HOST,
         "--server-name", PG_HOST, "--client-name", CLIENT_NAME])
    run([bin_path, "certs", "--out", dirs["bare-pki"], "--server-name", BARE_REDIS_HOST,
         "--server-name", BARE_PG_HOST, "--client-name", CLIENT_NAME])
    run([bin_path, "certs", "--out", dirs["router-pki"], "--server-name",
         "router-default.apps.snigate.test"])
    with open(os.path.join(state, "router-default.pem"), "w") as out:
        for part in ("server.crt", "server.key"):
            with open(os.path.join(dirs["router-pki"], part)) as f:
                out.write(f.read())
    return dirs


class Redis:
    """redis-server on 127.0.0.1:6379 (+ BARE_IP, TLS on BARE_REDIS_TLS_PORT)."""

    def __init__(self, sup, ns, state, bare_pki):
        self.sup, self.ns, self.state, self.pki = sup, ns, state, bare_pki
        self.dir = os.path.join(state, "redis")
        self.sock = os.path.join(state, "redis.sock")
        self.proc = None
        self.runs = 0

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.runs += 1
        p = self.pki
        self.proc = self.sup.start(f"redis.{self.runs}", self.ns, [
            "redis-server", "--bind", "127.0.0.1", BARE_IP, "--port", "6379",
            "--unixsocket", self.sock, "--unixsocketperm", "700", "--dir", self.dir,
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--daemonize", "no", "--logfile", "", "--maxclients", "2000",
            # Reachable from the private side only through TLS with a client certificate.
            "--protected-mode", "no",
            "--tls-port", str(BARE_REDIS_TLS_PORT), "--tls-cert-file", f"{p}/server.crt",
            "--tls-key-file", f"{p}/server.key", "--tls-ca-cert-file", f"{p}/ca.crt",
            "--tls-auth-clients", "yes"])
        wait_until("PONG from redis-server", lambda: self.client().ping(), TIMEOUT, self.proc)

    def stop(self):
        return self.proc.stop(signal.SIGTERM, 30)

    def client(self, db=0):
        return redis.Redis(unix_socket_path=self.sock, db=db, socket_timeout=5)


class Postgres:
    """PostgreSQL on 127.0.0.1:5432 (+ BARE_IP with hostssl and client certificates)."""

    def __init__(self, sup, ns, state, bindir, bare_pki):
        self.sup, self.ns, self.bindir, self.pki = sup, ns, bindir, bare_pki
        self.dir = os.path.join(state, "pg")
        self.proc = None
        self.runs = 0

    def as_postgres(self, *argv):
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
                *argv]

    def init(self, databases):
        os.makedirs(self.dir)
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        run(self.as_postgres(f"{self.bindir}/initdb", "-D", self.dir, "-U", "postgres",
                             "--auth=trust", "-E", "UTF8", "--no-locale"), timeout=120)
        for name in ("server.crt", "server.key", "ca.crt"):
            dst = os.path.join(self.dir, f"tls-{name}")
            shutil.copy(os.path.join(self.pki, name), dst)
            os.chown(dst, pw.pw_uid, pw.pw_gid)
            os.chmod(dst, 0o600)
        with open(os.path.join(self.dir, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nhost all all 127.0.0.1/32 trust\n"
                    f"hostssl all all {PRIVATE_IP}/32 trust clientcert=verify-ca\n")
        self.start()
        for db in databases:
            self.execute("postgres", f"create database {db}")

    def start(self):
        self.runs += 1
        self.proc = self.sup.start(f"postgres.{self.runs}", self.ns, self.as_postgres(
            f"{self.bindir}/postgres", "-D", self.dir, "-p", str(PG_PORT),
            "-c", f"listen_addresses=127.0.0.1,{BARE_IP}", "-c", "fsync=off",
            "-c", f"unix_socket_directories={self.dir}", "-c", "max_connections=300",
            "-c", "ssl=on", "-c", "ssl_cert_file=tls-server.crt",
            "-c", "ssl_key_file=tls-server.key", "-c", "ssl_ca_file=tls-ca.crt"))
        wait_until("PostgreSQL accepting connections", lambda: self.execute("postgres", "select 1"),
                   TIMEOUT, self.proc)

    def stop_fast(self):
        """`pg_ctl stop -m fast`: what a pod's preStop or an operator's restart does."""
        t0 = time.time()
        run(self.as_postgres(f"{self.bindir}/pg_ctl", "-D", self.dir, "-m", "fast", "-w",
                             "stop"), timeout=60)
        self.proc.wait(30)
        return time.time() - t0

    def connect(self, db):
        return psycopg2.connect(host=self.dir, port=PG_PORT, user="postgres", dbname=db,
                                connect_timeout=5)

    def execute(self, db, sql):
        conn = self.connect(db)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else True
        finally:
            conn.close()
