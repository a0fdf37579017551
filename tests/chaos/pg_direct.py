"""libpq >= 17 direct TLS (sslnegotiation=direct) straight to the snigate gateway.

Usage: python pg_direct.py "<libpq conninfo with sslmode=verify-full, without sslnegotiation>"
Prints one line per fact so the Rust test can compare stdout exactly. libpq requires the
server to select ALPN `postgresql` for a direct connection, so success proves that too.
"""
import sys

import psycopg

LIBPQ = psycopg.pq.version()
if LIBPQ < 170000:
    sys.exit(f"libpq {LIBPQ} is too old: sslnegotiation=direct needs libpq >= 17")
print("libpq>=17", True)

conninfo = sys.argv[1] + " sslnegotiation=direct"
with psycopg.connect(conninfo, connect_timeout=20) as conn:
    print("ssl_in_use", conn.info.pgconn.ssl_in_use)
    row = conn.execute("select 'direct ' || %s::text, current_user", (42,)).fetchone()
    print("row", row[0], row[1])
