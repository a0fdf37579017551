"""The targets of issue 10, as data, and the check of a run against them.

"losses" = results lost + tasks lost. "baseline K" = the snigate path may lose no more per
occurrence than the bare path did per occurrence of fault K in the same run (0 when bare lost
nothing), and have no more dead or stalled workers (a stall: a live worker whose consumer
executed nothing for 30 s while tasks were sent; the issue's "consumer gone").
"""

TARGETS = {
    # Two replicas, maxUnavailable 0: nothing at all may be lost, and every old replica must
    # finish its drain within terminationGracePeriodSeconds (exit 0, not killed).
    "gateway-rolling": {"results_lost": 0, "tasks_lost": 0, "workers_dead": 0, "stalls": 0,
                        "drain_within_grace": True},
    # Outages of at most 5 s, covered by result_backend_always_retry and the like.
    "gateway-restart": {"results_lost": 0, "outage_max_s": 5.0},
    "sidecar-restart": {"results_lost": 0, "outage_max_s": 5.0},
    # Faults that exist without snigate: no worse than bare.
    "redis-restart": {"baseline": "redis-restart"},
    "postgres-restart": {"baseline": "postgres-restart"},
    "partition": {"baseline": "partition"},
    # A graceful reload cuts nothing: there is no baseline loss to allow.
    "router-reload": {"baseline": None},
    # A hard router restart cuts every connection from the far side; to the worker that is
    # what a Redis restart is, so bare's Redis restart is the yardstick.
    "router-restart": {"baseline": "redis-restart"},
}

# After the soak, per gateway/sidecar process that lived through >= MIN_FAULTS faults: its
# last steady sample against its first (both taken with the fleet idle between faults).
# RSS may grow by RSS_SLACK_KIB or RSS_SLACK_RATIO of the start, whichever is larger (the
# allocator keeps some freed memory); fds not explained by open connections (fds - 2 x
# connections_open: a relayed connection holds two sockets) may grow by FDS_SLACK.
RESOURCES = {"min_faults": 10, "rss_slack_kib": 4096, "rss_slack_ratio": 0.25, "fds_slack": 2}


def losses(row):
    return row["results_lost"] + row["tasks_lost"]


def check_kind(kind, snigate, bare, faults):
    """Failure messages (empty: met) for one fault kind's totals on both paths."""
    target, out = TARGETS[kind], []
    for key in ("results_lost", "tasks_lost", "workers_dead", "stalls"):
        if key in target and snigate[key] > target[key]:
            out.append(f"{kind}: {key} {snigate[key]}, target {target[key]}")
    mine = [f for f in faults if f["kind"] == kind]
    if target.get("drain_within_grace"):
        slow = [d for f in mine for d in f.get("drains", []) if not d["within_grace"]]
        out += [f"{kind}: {d['replica']} did not drain within the grace period: {d}"
                for d in slow]
    if "outage_max_s" in target:
        long = [f["outage"] for f in mine if f.get("outage", 0) > target["outage_max_s"]]
        if long:
            out.append(f"{kind}: outages {long} s longer than the {target['outage_max_s']} s "
                       "the target assumes (the suite's timing, not a product loss)")
    if "baseline" in target:
        base_kind = target["baseline"]
        base = bare.get(base_kind) if base_kind else None
        allowed = losses(base) / base["occurrences"] if base else 0.0
        got = losses(snigate) / max(1, snigate["occurrences"])
        if got > allowed:
            out.append(f"{kind}: {got:.2f} losses per occurrence through snigate, bare "
                       f"{base_kind or '(none)'} {allowed:.2f}")
        for key in ("workers_dead", "stalls"):
            if snigate[key] > (base[key] if base else 0):
                out.append(f"{kind}: {key} {snigate[key]} through snigate, bare "
                           f"{base_kind or '(none)'} {base[key] if base else 0}")
    return out


def free_fds(sample):
    """Open fds that no relayed connection explains."""
    return sample["fds"] - 2 * sample["conns"]


def check_resources(steady, faults):
    """Failure messages for processes whose RSS or fds did not come back (see RESOURCES)."""
    out, rows = [], []
    for name in dict.fromkeys(s["name"] for s in steady):
        mine = [s for s in steady if s["name"] == name and s.get("conns") is not None]
        if len(mine) < 2:
            continue
        first, last = mine[0], mine[-1]
        lived = sum(1 for f in faults if first["t"] <= f["start"] <= last["t"])
        row = {"name": name, "faults": lived, "rss_start": first["rss_kib"],
               "rss_end": last["rss_kib"], "fds_start": first["fds"], "fds_end": last["fds"],
               "conns_start": first["conns"], "conns_end": last["conns"],
               "free_fds_start": free_fds(first), "free_fds_end": free_fds(last)}
        rows.append(row)
        if lived < RESOURCES["min_faults"]:
            continue
        slack = max(RESOURCES["rss_slack_kib"], RESOURCES["rss_slack_ratio"] * first["rss_kib"])
        if last["rss_kib"] > first["rss_kib"] + slack:
            out.append(f"{name}: RSS {first['rss_kib']} KiB -> {last['rss_kib']} KiB over "
                       f"{lived} faults (allowed +{slack:.0f} KiB)")
        if free_fds(last) > free_fds(first) + RESOURCES["fds_slack"]:
            out.append(f"{name}: fds beyond open connections {free_fds(first)} -> {free_fds(last)} "
                       f"over {lived} faults")
    return out, rows
