"""The Celery app of the end-to-end test (scripts/e2e.sh): one task, `fleet.add`.

The worker and the producer import this module; the environment chooses the path:

  FLEET_BROKER_URL      e.g. redis://localhost:6379/0 (sidecar) or rediss://HOST:443/0 (direct)
  FLEET_RESULT_BACKEND  e.g. db+postgresql://user@localhost:5432/db (sidecar, psycopg2) or
                        db+postgresql+psycopg://user@HOST:443/db?sslnegotiation=direct&... (direct)
  FLEET_TLS_DIR         set for rediss://: ca.crt, client.crt, client.key for the gateway's mTLS
  FLEET_TASK_DELAY      seconds each task sleeps (default 0.03), so the run lasts long enough
                        for the restarts to land in the middle of it
  FLEET_VISIBILITY_TIMEOUT  kombu's Redis visibility timeout in seconds (default 3600): a
                        message whose ack was lost in an outage is delivered again after it

The settings below are the ones a production worker behind snigate needs as well (see
openshift/README.md): retry the broker forever, retry result writes, recycle idle pooled
connections before the router's tunnel timeout, ping pooled connections before use.
"""
import os
import ssl
import time

from celery import Celery

app = Celery("fleet")

broker_url = os.environ["FLEET_BROKER_URL"]
transport_options = {
    "visibility_timeout": int(os.environ.get("FLEET_VISIBILITY_TIMEOUT", "3600")),
    "socket_connect_timeout": 10,
    "socket_timeout": 30,
    "socket_keepalive": True,
    "retry_on_timeout": True,
    "health_check_interval": 25,
}

if "FLEET_VISIBILITY_TIMEOUT" in os.environ:
    # Sweep for such messages every 2 s instead of every ~100 s (interval 10 x throttle 10),
    # and do not let a sweep cut off by an outage hold the sweep lock for 5 minutes.
    transport_options.update(unacked_restore_interval=2, unacked_restore_throttle=1,
                             unacked_mutex_expire=10)

app.conf.update(
    broker_url=broker_url,
    result_backend=os.environ["FLEET_RESULT_BACKEND"],
    broker_transport_options=transport_options,
    broker_connection_retry=True,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    # Celery's database backend retries a failed result write only when told to.
    result_backend_always_retry=True,
    result_backend_max_retries=40,
    result_backend_base_sleep_between_retries_ms=100,
    result_backend_max_sleep_between_retries_ms=2000,
    database_engine_options={"pool_recycle": 1800, "pool_pre_ping": True},
    database_create_tables_at_setup=True,
    task_default_queue="fleet",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)

tls_dir = os.environ.get("FLEET_TLS_DIR")
if broker_url.startswith("rediss://"):
    if not tls_dir:
        raise SystemExit("FLEET_TLS_DIR must name the directory with ca.crt, client.crt, client.key")
    # redis-py sends SNI = the URL's host, so the router and the gateway both route on it.
    app.conf.broker_use_ssl = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": os.path.join(tls_dir, "ca.crt"),
        "ssl_certfile": os.path.join(tls_dir, "client.crt"),
        "ssl_keyfile": os.path.join(tls_dir, "client.key"),
        "ssl_check_hostname": True,
    }

DELAY = float(os.environ.get("FLEET_TASK_DELAY", "0.03"))


@app.task(name="fleet.add")
def add(x, y):
    time.sleep(DELAY)
    return x + y
