"""The Celery app of the chaos suite: one task, `chaos.work`. Workers and the producer import it.

  CHAOS_BROKER_URL      redis://localhost:6379/0 (through the sidecar), rediss://HOST:6380/0
                        (bare baseline, Redis' own TLS) or redis://127.0.0.1:6379/0 (producer)
  CHAOS_RESULT_BACKEND  db+postgresql+psycopg2://… (unset: no result backend, e.g. celery 5.7)
  CHAOS_TLS_DIR         for rediss://: ca.crt, client.crt, client.key
  CHAOS_EXEC_LOG        the worker's side channel: every execution appends "task_id pid time
                        hostname" to this file (one write(2) with O_APPEND: whole lines even
                        from several pool processes), whatever happens on the network
  CHAOS_TASK_SECONDS    how long a task sleeps (default 0.2)

The settings are the ones the README recommends for workers behind snigate: retry the broker
forever, retry result writes (result_backend_always_retry), ping pooled database connections
before use and recycle them below the router's tunnel timeout. The 15 s visibility timeout,
swept every 2 s, brings back a message whose ack was lost in an outage within the run.
Remote control is off: its Redis subscriber connection is what stalls a worker after a cut
(see openshift/README.md, step 7); both fleets run without it.
"""
import os
import socket
import ssl
import time

from celery import Celery

app = Celery("chaos")
broker_url = os.environ["CHAOS_BROKER_URL"]

app.conf.update(
    broker_url=broker_url,
    broker_transport_options={
        "visibility_timeout": 15,
        "unacked_restore_interval": 2,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 10,
        "socket_connect_timeout": 10,
        "socket_timeout": 30,
        "socket_keepalive": True,
        "retry_on_timeout": True,
        "health_check_interval": 25,
    },
    broker_connection_retry=True,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    worker_enable_remote_control=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)

if os.environ.get("CHAOS_RESULT_BACKEND"):
    app.conf.update(
        result_backend=os.environ["CHAOS_RESULT_BACKEND"],
        result_backend_always_retry=True,
        result_backend_max_retries=40,
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=2000,
        database_engine_options={"pool_recycle": 1800, "pool_pre_ping": True},
        database_create_tables_at_setup=True,
    )

if broker_url.startswith("rediss://"):
    tls_dir = os.environ["CHAOS_TLS_DIR"]
    app.conf.broker_use_ssl = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": os.path.join(tls_dir, "ca.crt"),
        "ssl_certfile": os.path.join(tls_dir, "client.crt"),
        "ssl_keyfile": os.path.join(tls_dir, "client.key"),
        "ssl_check_hostname": True,
    }

SECONDS = float(os.environ.get("CHAOS_TASK_SECONDS", "0.2"))
EXEC_LOG = os.environ.get("CHAOS_EXEC_LOG")


@app.task(name="chaos.work", bind=True)
def work(self, seq):
    time.sleep(SECONDS)
    if EXEC_LOG:
        line = f"{self.request.id} {os.getpid()} {time.time():.3f} {socket.gethostname()}\n"
        fd = os.open(EXEC_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    return 2 * seq
