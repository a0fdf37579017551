"""Producer and checker of the end-to-end test (scripts/e2e.sh); runs in the "public" namespace.

  fleet_ctl.py send START COUNT IDS_FILE
      send fleet.add(i, i) for i in START..START+COUNT-1 through the broker; append
      "i task_id" lines to IDS_FILE
  fleet_ctl.py check IDS_FILE WORKER_LOG LABEL ELAPSED
      read every result back from the result backend (PostgreSQL) and compare it with 2*i;
      count the tasks the worker log shows as executed more than once; print one summary
      line; exit 1 when a task is lost, wrong or duplicated

Uses fleet.py's app, so FLEET_BROKER_URL and FLEET_RESULT_BACKEND name the public side.
"""
import collections
import re
import sys

from fleet import add, app


def send(start, count, ids_file):
    with open(ids_file, "a") as out:
        with app.producer_or_acquire() as producer:
            for i in range(start, start + count):
                result = add.apply_async((i, i), producer=producer)
                out.write(f"{i} {result.id}\n")
    print(f"sent tasks {start}..{start + count - 1}")


def load_ids(ids_file):
    expected = {}
    with open(ids_file) as f:
        for line in f:
            i, task_id = line.split()
            expected[task_id] = int(i)
    return expected


def executions(worker_log):
    """task id -> how many times the worker log says it succeeded."""
    pattern = re.compile(r"Task fleet\.add\[([0-9a-f-]+)\] succeeded")
    counts = collections.Counter()
    with open(worker_log, errors="replace") as f:
        for line in f:
            m = pattern.search(line)
            if m:
                counts[m.group(1)] += 1
    return counts


def stored_value(result):
    """Celery < 5.7 pickles the result itself; 5.7 stores the serialized (JSON) bytes."""
    if isinstance(result, (bytes, bytearray)):
        return app.backend.decode(bytes(result))
    return result


def check(ids_file, worker_log, label, elapsed):
    from celery.backends.database.models import Task

    expected = load_ids(ids_file)
    session = app.backend.ResultSession()
    try:
        rows = session.query(Task).filter(Task.task_id.in_(list(expected))).all()
        rows = [(r.task_id, r.status, stored_value(r.result)) for r in rows]
    finally:
        session.close()

    per_id = collections.Counter(task_id for task_id, _, _ in rows)
    duplicated = sum(c - 1 for c in per_id.values() if c > 1)
    ok, wrong = set(), []
    for task_id, status, result in rows:
        want = 2 * expected[task_id]
        if status == "SUCCESS" and result == want:
            ok.add(task_id)
        else:
            wrong.append(f"{task_id}: status={status} result={result!r} expected={want}")
    lost = sorted(set(expected) - set(per_id))
    reruns = sum(1 for task_id, c in executions(worker_log).items() if c > 1 and task_id in expected)

    print(f"e2e[{label}]: tasks sent {len(expected)}, completed {len(ok)}, lost {len(lost)}, "
          f"wrong {len(wrong)}, duplicated {duplicated}, executed twice {reruns} "
          f"(at-least-once redelivery), elapsed {elapsed} s")
    for line in wrong[:10]:
        print(f"e2e[{label}]: wrong result {line}", file=sys.stderr)
    for task_id in lost[:10]:
        print(f"e2e[{label}]: lost task {task_id} (add({expected[task_id]}, {expected[task_id]}))",
              file=sys.stderr)
    failed = lost or wrong or duplicated or len(ok) != len(expected)
    return 1 if failed else 0


def main(argv):
    if len(argv) == 4 and argv[0] == "send":
        send(int(argv[1]), int(argv[2]), argv[3])
        return 0
    if len(argv) == 5 and argv[0] == "check":
        return check(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
