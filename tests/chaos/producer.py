"""The producer: sends chaos.work(seq) at a steady rate to each queue, straight to Redis in
the public namespace (like the public API pod), and logs every send.

Usage: producer.py RATE_PER_QUEUE SENT_LOG PAUSE_FILE QUEUE[:EVERY]...
QUEUE:EVERY gets a task on every EVERY-th tick only. Each send appends
"time queue seq task_id ok" (or "... fail <error>") to SENT_LOG; a failed
send is not retried (its id is never counted as sent). While PAUSE_FILE exists it sends
nothing. SIGTERM stops it.
"""
import os
import signal
import sys
import time
import uuid

from fleet_app import app

stopping = False


def stop(*_):
    global stopping
    stopping = True


def close(conn):
    """Drop a broken connection; the next send opens a new one."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # already gone with the broker
            pass


def main(rate, sent_log, pause_file, queues):
    signal.signal(signal.SIGTERM, stop)
    interval = 1.0 / rate
    seq, tick = 0, 0
    queues = [(q.split(":")[0], int(q.split(":")[1]) if ":" in q else 1) for q in queues]
    next_at = time.monotonic()
    conn = producer = None
    with open(sent_log, "a", buffering=1) as out:
        while not stopping:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
            if os.path.exists(pause_file):
                continue
            tick += 1
            for queue, every in queues:
                if tick % every:
                    continue
                seq += 1
                task_id = str(uuid.uuid4())
                t = time.time()
                try:
                    if producer is None:
                        conn = app.connection_for_write()
                        producer = conn.Producer()
                    app.send_task("chaos.work", args=(seq,), task_id=task_id, queue=queue,
                                  producer=producer, retry=False)
                    out.write(f"{t:.3f} {queue} {seq} {task_id} ok\n")
                except Exception as e:  # the broker is restarting: log it, reconnect, go on
                    out.write(f"{t:.3f} {queue} {seq} {task_id} fail {type(e).__name__}\n")
                    close(conn)
                    conn = producer = None
            if time.monotonic() - next_at > 5:
                next_at = time.monotonic()  # after a long stall, do not burst to catch up


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:])
