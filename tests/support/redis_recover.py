"""redis-py (the client Celery/kombu use) through the sidecar while the backend is down,
then after it comes back on the same address: the same client object must recover.

Usage: python redis_recover.py SIDECAR_PORT FLAG_FILE
The test creates FLAG_FILE once the backend is up again.
"""
import os
import sys
import time

import redis

port, flag = int(sys.argv[1]), sys.argv[2]
r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, socket_connect_timeout=10)
try:
    r.ping()
    print("down: unexpected PONG")
except redis.exceptions.ResponseError as e:
    print("down: ResponseError", e)
except redis.exceptions.ConnectionError as e:
    print("down: ConnectionError", e)
print("waiting", flush=True)

deadline = time.monotonic() + 30
while not os.path.exists(flag):
    if time.monotonic() > deadline:
        sys.exit("the backend never came back")
    time.sleep(0.02)
print("up: ping", r.ping())
print("up: set", r.set("recovered", "yes"), r.get("recovered").decode())
