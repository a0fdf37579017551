"""Counting: what was sent, received, executed and stored, per fault occurrence and per kind.

A task belongs to the fault window in which it was sent. Window k runs from LEAD seconds
before fault k starts to LEAD seconds before fault k+1 starts: a task sent just before a fault
is still queued, prefetched or running when it hits. Tasks sent before the first window belong
to "none" (the quiet start).

  sent           the producer's send returned (a send that raised is not counted)
  received       a worker log says "received"
  executed       the side channel has a line for it (one per execution)
  executed twice more than one line (at-least-once redelivery: not a loss)
  results stored a SUCCESS row with the right value in the path's database
  results lost   executed, no such row
  tasks lost     sent, never executed
  workers dead   a worker process exited on its own during the window
  stalls         a live worker executed nothing for 30 s while tasks were sent (its consumer
                 gone), counted in the window where the stall began
"""
import bisect
import collections
import pickle

LEAD = 2.0
COUNTS = ("sent", "received", "executed", "executed_twice", "results_stored", "results_lost",
          "tasks_lost", "workers_dead", "stalls")


def load_sent(path):
    """{queue: {task_id: time}} of successful sends, and the ids whose send raised."""
    sent, failed = collections.defaultdict(dict), set()
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5:
                t, queue, _seq, task_id, status = parts[:5]
                if status == "ok":
                    sent[queue][task_id] = float(t)
                else:
                    failed.add(task_id)
    return sent, failed


def load_executions(paths):
    """task_id -> [execution times] from the side-channel logs."""
    out = collections.defaultdict(list)
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3:
                        out[parts[0]].append(float(parts[2]))
        except FileNotFoundError:
            pass
    return out


def load_results(pg, db):
    """task_id -> (status, value) from Celery's celery_taskmeta table."""
    rows = pg.execute(db, "select task_id, status, result from celery_taskmeta")
    out = {}
    for task_id, status, result in rows if rows is not True else []:
        try:
            value = pickle.loads(bytes(result)) if result is not None else None
        except Exception as e:
            value = f"(unreadable: {e})"
        out[task_id] = (status, value)
    return out


class Windows:
    """Maps a time to the fault occurrence whose window holds it."""

    def __init__(self, faults):
        self.faults = sorted(faults, key=lambda f: f["start"])
        self.starts = [f["start"] - LEAD for f in self.faults]

    def index(self, t):
        return bisect.bisect_right(self.starts, t) - 1  # -1: before the first fault


def account(path, sent, executions, received, results, deaths, stalls, faults, seqs):
    """Per-occurrence counts for one path, over the faults that touch it: (windows, rows) with
    rows[i] for windows.faults[i] and rows[-1] for "none"; each row has the counts and the
    lost results and tasks (id, send time, ...)."""
    windows = Windows([f for f in faults if path in f["paths"]])
    rows = collections.defaultdict(lambda: {**{c: 0 for c in COUNTS},
                                            "lost_results": [], "lost_tasks": []})
    for task_id, t in sent.items():
        row = rows[windows.index(t)]
        row["sent"] += 1
        row["received"] += task_id in received
        runs = executions.get(task_id, [])
        row["executed"] += bool(runs)
        row["executed_twice"] += len(runs) > 1
        status, value = results.get(task_id, (None, None))
        stored = status == "SUCCESS" and value == 2 * seqs.get(task_id, -1)
        row["results_stored"] += stored
        if runs and not stored:
            row["results_lost"] += 1
            row["lost_results"].append((task_id, t, runs, status))
        if not runs:
            row["tasks_lost"] += 1
            row["lost_tasks"].append((task_id, t, task_id in received))
    for key, events in (("workers_dead", deaths), ("stalls", stalls)):
        for event in events:
            if event["path"] == path:
                rows[windows.index(event["t"] or 0)][key] += 1
    return windows, rows


def load_seqs(path):
    seqs = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5:
                seqs[parts[3]] = int(parts[2])
    return seqs


def by_kind(windows, rows):
    """Sum the occurrences of each kind (plus "none")."""
    kinds = collections.OrderedDict()
    for i, fault in [(-1, {"kind": "none"})] + list(enumerate(windows.faults)):
        total = kinds.setdefault(fault["kind"], {**{c: 0 for c in COUNTS}, "occurrences": 0})
        total["occurrences"] += 1
        for c in COUNTS:
            total[c] += rows[i][c]
    return kinds
