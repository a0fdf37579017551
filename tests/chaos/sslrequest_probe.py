"""Send a PostgreSQL SSLRequest, as every libpq before 17 (and psql's default) does, and print
what comes back. Used by the chaos suite's quick checks against the router (expect no `S`:
the router waits for a TLS ClientHello with SNI, never sees one, and hands the connection to
its default TLS frontend) and against the gateway directly (expect `S`).

Usage: sslrequest_probe.py HOST PORT TIMEOUT_SECONDS
Prints one line: `answer: S`, `answer: N`, `answer: closed` or `answer: bytes <hex>`.
"""
import socket
import sys

SSL_REQUEST = bytes.fromhex("0000000804d2162f")

host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with socket.create_connection((host, port), timeout=timeout) as s:
    s.sendall(SSL_REQUEST)
    try:
        data = s.recv(1024)
    except ConnectionResetError:
        data = b""
    except socket.timeout:
        print("answer: timeout")
        sys.exit(0)
if not data:
    print("answer: closed")
elif data in (b"S", b"N"):
    print(f"answer: {data.decode()}")
else:
    print(f"answer: bytes {data[:32].hex()}")
