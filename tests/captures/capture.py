"""Record real Redis and PostgreSQL conversations for the drain scanners' unit tests
(src/conversation): each scenario drives a real client through a recording proxy to a real
server and marks the points where the client has, or has not, a request outstanding.

Run from the repository root (as root, the PostgreSQL cluster runs as the `postgres` user):
  SNIGATE_PG_BINDIR=/usr/lib/postgresql/15/bin .venv/bin/python tests/captures/capture.py
The `.cap` format is described in recorder.py.
"""

import os
import shutil
import tempfile
from pathlib import Path

from postgres_scenarios import POSTGRES
from recorder import Recorder, start_postgres, start_redis
from redis_scenarios import REDIS


def main():
    workdir = Path(tempfile.mkdtemp(prefix="snigate-capture-"))
    os.chmod(workdir, 0o755)  # the postgres user must reach its directory inside
    procs = []
    try:
        rproc, rport = start_redis(workdir)
        procs.append(rproc)
        pproc, pport = start_postgres(workdir / "pg")
        procs.append(pproc)
        for scenarios, port in ((REDIS, rport), (POSTGRES, pport)):
            for scenario in scenarios:
                rec = Recorder(port)
                scenario(rec, port)
                rec.save(scenario.__name__)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
