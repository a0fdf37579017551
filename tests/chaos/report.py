"""The report: markdown tables (per fault kind, snigate vs bare; per occurrence; drains;
RSS and fds) and the details of every loss, with what the worker logs said about it."""
import collections
import re

from accounting import COUNTS

SHORT = ("sent", "results_lost", "tasks_lost", "workers_dead", "stalls")
HEAD = ["sent", "received", "executed", "executed twice", "results stored", "results lost",
        "tasks lost", "workers dead", "stalls ≥ 30 s"]


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def kinds_table(kinds):
    """kinds: {path: {kind: totals}} -> one row per kind and path."""
    order = list(dict.fromkeys(k for path in kinds.values() for k in path))
    rows = []
    for kind in order:
        for path in ("snigate", "bare"):
            total = kinds.get(path, {}).get(kind)
            if total is None:
                if path == "bare" and kind != "none":
                    rows.append([kind, path, "—", "n/a (no such fault)"] + [""] * 8)
                continue
            rows.append([kind, path, total["occurrences"]] + [total[c] for c in COUNTS])
    return table(["fault", "path", "occurrences"] + HEAD, rows)


def occurrences_table(faults, rows_by_path, t0):
    index = {path: {id(f): i for i, f in enumerate(w.faults)}
             for path, (w, _) in rows_by_path.items()}
    out = []
    for n, f in enumerate(faults, 1):
        cells = [n, f"{f['start'] - t0:.0f}", f["kind"], f.get("detail", "")]
        for path, (_, rows) in rows_by_path.items():
            i = index[path].get(id(f))
            r = rows[i] if i is not None else None
            cells.append("—" if r is None else " / ".join(str(r[k]) for k in SHORT))
        out.append(cells)
    return table(["#", "t (s)", "fault", "detail"] +
                 [f"{p}: sent / results lost / tasks lost / dead / stalls" for p in rows_by_path],
                 out)


def drains_table(faults, t0):
    rows = [[f["kind"], f"{f['start'] - t0:.0f}", d["replica"], d["seconds"], d["rc"], d["killed"],
             d["open_at_drain"], d["forced_closed"], d["within_grace"]]
            for f in faults for d in f.get("drains", [])]
    return table(["fault", "t (s)", "replica", "SIGTERM to exit (s)", "exit status", "killed",
                  "open when accepting stopped", "closed by force", "within grace"], rows)


def resources_table(rows):
    return table(["process", "faults lived", "RSS start (KiB)", "RSS end (KiB)", "fds start",
                  "fds end", "connections start", "connections end", "fds - 2×conns start",
                  "fds - 2×conns end"],
                 [[r["name"], r["faults"], r["rss_start"], r["rss_end"], r["fds_start"],
                   r["fds_end"], r["conns_start"], r["conns_end"], r["free_fds_start"],
                   r["free_fds_end"]] for r in rows])


def worker_lines(logs, task_id, limit=6):
    """Lines of the worker logs that name the task, and the errors logged around it."""
    out = []
    for log in logs:
        with open(log, errors="replace") as f:
            out += [line.rstrip() for line in f if task_id in line]
    return out[:limit]


def loss_details(path, windows, rows, worker_logs, limit=20):
    out = []
    for i, row in sorted(rows.items()):
        fault = windows.faults[i]["kind"] if i >= 0 else "none"
        for task_id, t, runs, status in row["lost_results"][:limit]:
            out.append(f"- {path} / {fault}: result lost for {task_id} (sent {t:.3f}, executed "
                       f"{len(runs)}x at {', '.join(f'{x:.3f}' for x in runs)}, row: {status})")
            out += [f"    {line}" for line in worker_lines(worker_logs, task_id)]
        for task_id, t, received in row["lost_tasks"][:limit]:
            out.append(f"- {path} / {fault}: task lost {task_id} (sent {t:.3f}, "
                       f"{'received' if received else 'never received'}, never executed)")
            out += [f"    {line}" for line in worker_lines(worker_logs, task_id)]
    return out


def error_summary(logs):
    """Error lines of the worker logs by kind (exception class and message head), counted."""
    counts = collections.Counter()
    pattern = re.compile(r"(ERROR|WARNING|CRITICAL)/[A-Za-z-]+\] (.{0,110})")
    for log in logs:
        with open(log, errors="replace") as f:
            for line in f:
                m = pattern.search(line)
                if m:
                    counts[re.sub(r"[0-9a-f-]{36}|\d+(\.\d+)?", "N", m.group(2))] += 1
    return [f"{n}x {text}" for text, n in counts.most_common(12)]


def render(data, faults, t0, meta, failures, plot_name=None):
    """The whole report as markdown."""
    out = [f"# Chaos run {meta['when']}", "",
           ", ".join(f"{k}: {v}" for k, v in meta.items() if k != "when"), ""]
    out += ["## Targets", ""]
    out += [f"- FAILED {f}" for f in failures] or ["- all met"]
    out += ["", "## Per fault kind (tasks attributed to the window they were sent in)", "",
            kinds_table(data["kinds"]), "",
            f"Sends that raised (not counted as sent): {data['failed_sends']}, of which "
            f"executed anyway: {data['failed_sends_executed']}.", ""]
    if data["deaths"] or data["stalls"]:
        out += ["## Workers dead or stalled", ""]
        out += [f"- {d}" for d in data["deaths"] + data["stalls"]] + [""]
    out += ["## Gateway stops (drain)", "", drains_table(faults, t0), "",
            "## RSS and open fds (steady samples, first vs last of each process)", "",
            resources_table(data["resource_rows"]), ""]
    out += [f"- {f}" for f in data["resource_failures"]]
    if plot_name:
        out += ["", f"![faults and throughput]({plot_name})", ""]
    out += ["## Losses", ""]
    for path, (windows, rows) in data["per_path"].items():
        out += loss_details(path, windows, rows, data["worker_logs"][path]) or [f"- {path}: none"]
    out += ["", "## Worker log errors", ""]
    for path, logs in data["worker_logs"].items():
        out += [f"- {path}: {line}" for line in error_summary(logs)]
    out += ["", "## Occurrences", "", occurrences_table(faults, data["per_path"], t0), ""]
    return "\n".join(out)
