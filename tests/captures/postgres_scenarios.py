"""PostgreSQL scenarios for capture.py: psql (simple queries, COPY) and psycopg (extended
queries, pipelines, transactions, notifications)."""

import os
import subprocess

import psycopg

from recorder import BIG, BUSY, PASSWORD, REST, WAIT, in_thread, pg_dsn

def psql_script(rec, port):
    script = r"""
SELECT 1;
SELECT 1; SELECT 2;
CREATE TABLE t (id int, v text);
COPY t FROM STDIN;
1	one
2	two
\.
COPY t TO STDOUT;
BEGIN;
INSERT INTO t VALUES (3, 'three');
SELECT * FROM nosuch;
ROLLBACK;
\copy t to stdout
SELECT repeat('x', 70000);
DROP TABLE t;
"""
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGSSLMODE="disable", PGGSSENCMODE="disable")
    subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(rec.port), "-U", "postgres",
                    "-d", "postgres", "-f", "-"], input=script.encode(), env=env,
                   capture_output=True, timeout=WAIT, check=True)
    rec.mark(REST)


def psycopg_session(rec, port):
    dsn = pg_dsn(rec.port) + " sslmode=disable gssencmode=disable"
    conn = psycopg.connect(dsn, autocommit=True)
    rec.mark(REST)
    assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
    for _ in range(6):
        conn.execute("SELECT %s::text", ("prepared",), prepare=True)
    rec.mark(REST)
    conn.execute("CREATE TABLE items (id int, body text)")
    with conn.pipeline():
        for i in range(20):
            conn.execute("INSERT INTO items VALUES (%s, %s)", (i, "x" * i))
        conn.execute("SELECT count(*) FROM items")
    rec.mark(REST)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO items VALUES (%s, %s)", [(i, "y") for i in range(50)])
    rec.mark(REST)
    with conn.cursor().copy("COPY items FROM STDIN") as copy:
        for i in range(3000):
            copy.write_row((i, f"row {i}"))
    rec.mark(REST)
    with conn.cursor().copy("COPY items TO STDOUT") as copy:
        for _ in copy:
            pass
    rec.mark(REST)
    conn.execute("INSERT INTO items VALUES (-1, %s)", ("z" * BIG,))
    assert len(conn.execute("SELECT body FROM items WHERE id = -1").fetchone()[0]) == BIG
    rec.mark(REST)
    transactions(rec, conn)
    notices(rec, conn, port)
    conn.close()


def transactions(rec, conn):
    conn.autocommit = False
    conn.execute("SELECT 1")  # psycopg opens the transaction: ReadyForQuery says T
    rec.mark(BUSY)
    conn.commit()
    rec.mark(REST)
    try:
        conn.execute("SELECT * FROM nosuch")
    except psycopg.errors.UndefinedTable:
        pass
    rec.mark(BUSY)  # failed transaction: ReadyForQuery says E
    conn.rollback()
    rec.mark(REST)
    conn.autocommit = True
    t = in_thread(lambda: conn.execute("SELECT pg_sleep(0.5)"))
    rec.wait_saw(b"c", b"pg_sleep")
    rec.mark(BUSY)
    t.join(WAIT)
    rec.mark(REST)


def notices(rec, conn, port):
    """Messages the server sends on its own, to a client with nothing outstanding."""
    conn.execute("LISTEN jobs")
    rec.mark(REST)
    with psycopg.connect(pg_dsn(port), autocommit=True) as other:
        other.execute("NOTIFY jobs, 'wake up'")
    rec.wait_saw(b"s", b"wake up")
    rec.mark(REST)
    conn.execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
    rec.mark(REST)


POSTGRES = [psql_script, psycopg_session]
