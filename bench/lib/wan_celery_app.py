"""The Celery app of the WAN benchmark, for the worker (client side, through a chain) and the
producer (server side, direct). Configured from the environment:

  WAN_BROKER          broker URL
  WAN_BROKER_SSL      JSON of broker_use_ssl, when the broker URL is rediss://
  WAN_BACKEND         result backend URL (db+postgresql+psycopg2://...)
"""
import json
import os

from celery import Celery

import wan_names  # noqa: F401  (*.bench.test -> 127.0.0.1 for the backend-tls chain)

app = Celery("wan", broker=os.environ["WAN_BROKER"], backend=os.environ["WAN_BACKEND"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    broker_use_ssl=json.loads(os.environ.get("WAN_BROKER_SSL") or "null") or None,
    worker_hijack_root_logger=False,
    task_serializer="json",
    result_serializer="json",
)


@app.task(name="wan.noop")
def noop(i):
    return i
