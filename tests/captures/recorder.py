"""The recording proxy and private servers behind capture.py.

A `.cap` file is a sequence of records: one tag byte, a big-endian u32 length, the bytes.
  `c`  bytes the client sent, as one read of the proxy
  `s`  bytes the server sent, as one read of the proxy
  `r`  (empty) the client has no request outstanding here: the tracker must say "at rest"
  `b`  (empty) a request is outstanding or a transaction is open: it must not
"""

import os
import pwd
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import redis

HERE = Path(__file__).resolve().parent
PG_BINDIR = Path(os.environ.get("SNIGATE_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PASSWORD = "capture-only"
BIG = 64 * 1024
WAIT = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, cond, limit=WAIT):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise TimeoutError(f"timed out waiting for {what}")


class Recorder:
    """A one-connection TCP proxy that keeps every read of each side, in order."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.records = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target)
        pumps = [
            threading.Thread(target=self._pump, args=(client, server, b"c")),
            threading.Thread(target=self._pump, args=(server, client, b"s")),
        ]
        for p in pumps:
            p.start()
        for p in pumps:
            p.join()
        client.close()
        server.close()
        self.done.set()

    def _pump(self, src, dst, tag):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            # Recorded before it is forwarded: once a client has read a reply, it is recorded.
            with self.lock:
                self.records.append((tag, data))
            dst.sendall(data)

    def mark(self, tag):
        with self.lock:
            self.records.append((tag, b""))

    def saw(self, tag, needle):
        """Whether `needle` is in the bytes of `tag` since the last marker."""
        with self.lock:
            seen = b""
            for t, data in reversed(self.records):
                if t in (b"r", b"b"):
                    break
                if t == tag:
                    seen = data + seen
            return needle in seen

    def wait_saw(self, tag, needle):
        wait_until(f"{needle!r} from {tag!r}", lambda: self.saw(tag, needle))

    def save(self, name):
        self.done.wait(WAIT)
        with self.lock, open(HERE / f"{name}.cap", "wb") as out:
            for tag, data in self.records:
                out.write(tag + struct.pack(">I", len(data)) + data)
        print(f"{name}.cap: {len(self.records)} records")


# ---------------------------------------------------------------- servers


def start_redis(workdir):
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until("redis", lambda: _redis_up(port))
    return proc, port


def _redis_up(port):
    try:
        return redis.Redis(port=port).ping()
    except redis.ConnectionError:
        return False


def _as_postgres():
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)


def start_postgres(workdir):
    workdir.mkdir()
    os.chmod(workdir, 0o777)
    data, pwfile = workdir / "data", workdir / "pw"
    pwfile.write_text(PASSWORD + "\n")
    os.chmod(pwfile, 0o644)
    subprocess.run([PG_BINDIR / "initdb", "-D", data, "-U", "postgres", "--pwfile", pwfile,
                    "--auth=scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"],
                   check=True, stdout=subprocess.DEVNULL, preexec_fn=_as_postgres)
    port = free_port()
    proc = subprocess.Popen(
        [PG_BINDIR / "postgres", "-D", data, "-k", workdir, "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_as_postgres)
    wait_until("postgres", lambda: _pg_up(port), limit=60)
    return proc, port


def _pg_up(port):
    try:
        psycopg.connect(pg_dsn(port)).close()
        return True
    except psycopg.OperationalError:
        return False


def pg_dsn(port):
    return f"host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres"


REST, BUSY = b"r", b"b"


def in_thread(call):
    t = threading.Thread(target=call)
    t.start()
    return t
