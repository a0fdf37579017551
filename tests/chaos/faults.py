"""The faults. Each takes the lab and a random generator, does its thing while tasks flow, and
returns a record: kind, start, end, which paths it touches, and what it measured.

Endpoint propagation: when a gateway pod stops, OpenShift takes it out of the router a moment
later (endpoints, then the router's reload). The suite reloads the router 0.2–0.8 s after the
SIGTERM: less than shutdown_delay (1 s), as the 5 s delay is meant to cover it in production.
"""
import time

from snigate import SHUTDOWN_DELAY

PARTITION_SECONDS = 10.0
PROPAGATION = (0.2, 0.8)
RESTART_GAP = (1.0, 2.0)
BOTH = ("snigate", "bare")
SNIGATE = ("snigate",)


def record(kind, start, paths, **details):
    return {"kind": kind, "start": start, "end": time.time(), "paths": list(paths), **details}


def propagate(rng):
    time.sleep(rng.uniform(*PROPAGATION))


def gateway_rolling(lab, rng):
    """One replica at a time, maxUnavailable 0 / maxSurge 1: new replica ready, router points
    at it, old one SIGTERM (router drops it shortly after), next. Then wait for the old ones
    to exit within terminationGracePeriodSeconds."""
    start, deploy, old = time.time(), lab.deploy, list(lab.deploy.serving)
    if lab.quiet:
        quiet_broker(lab)
    for replica in old:
        deploy.spawn()
        lab.router.reload(deploy.serving)
        deploy.terminate(replica)
        propagate(rng)
        lab.router.reload(deploy.serving)
    lab.producer.resume()
    drains = [deploy.await_exit(r) for r in old]
    return record("gateway-rolling", start, SNIGATE, drains=drains, quiet=lab.quiet,
                  detail=", ".join(f"{d['replica']} {d['seconds']} s" for d in drains))


def gateway_restart(lab, rng):
    """Every replica stops at once (a one-replica Deployment's pod deleted): the router has no
    live server for 1–2 s until the new replicas are ready."""
    start, deploy, old = time.time(), lab.deploy, list(lab.deploy.serving)
    for replica in old:
        deploy.terminate(replica)
    propagate(rng)
    lab.router.reload([])
    down = time.time()
    time.sleep(rng.uniform(*RESTART_GAP))
    for _ in old:
        deploy.spawn()
    lab.router.reload(deploy.serving)
    outage = time.time() - down
    drains = [deploy.await_exit(r) for r in old]
    return record("gateway-restart", start, SNIGATE, outage=round(outage, 2), drains=drains,
                  detail=f"no live server for {outage:.1f} s")


def sidecar_restart(lab, rng):
    """SIGTERM (it drains), then a new sidecar on the same ports."""
    start = time.time()
    lab.sidecar.stop()
    lab.sidecar.start()
    outage = time.time() - start
    return record("sidecar-restart", start, SNIGATE, outage=round(outage, 2),
                  detail=f"down {outage:.1f} s")


def quiet_broker(lab):
    """Pause sends until both queues are empty: no message is being popped when the broker
    connection goes (the short run's single occurrence cannot tell kombu's BRPOP window from
    a real loss; the soak never pauses and counts it)."""
    lab.producer.pause()
    client = lab.redis.client()
    deadline = time.time() + 10
    while time.time() < deadline and any(client.llen(q) for q in lab.queues):
        time.sleep(0.05)


def redis_restart(lab, rng):
    """SIGTERM (appendonly, fsync always: the queue survives), start again."""
    start = time.time()
    if lab.quiet:
        quiet_broker(lab)
    took = lab.redis.stop()
    lab.redis.start()
    lab.producer.resume()
    return record("redis-restart", start, BOTH, detail=f"stop {took:.1f} s, "
                  f"down {time.time() - start:.1f} s", quiet=lab.quiet)


def postgres_restart(lab, rng):
    """`pg_ctl stop -m fast`, start again."""
    start = time.time()
    took = lab.pg.stop_fast()
    lab.pg.start()
    return record("postgres-restart", start, BOTH,
                  detail=f"stop {took:.1f} s, down {time.time() - start:.1f} s")


def partition(lab, rng):
    """Every packet between the private and the public side dropped for 10 s."""
    start = time.time()
    lab.topo.partition()
    try:
        time.sleep(PARTITION_SECONDS)
    finally:
        lab.topo.heal()
    return record("partition", start, BOTH, detail=f"{PARTITION_SECONDS:.0f} s")


def router_reload(lab, rng):
    start = time.time()
    took = lab.router.reload(lab.deploy.serving)
    return record("router-reload", start, SNIGATE, detail=f"{took:.2f} s")


def router_restart(lab, rng):
    start = time.time()
    if lab.quiet:
        quiet_broker(lab)
    took = lab.router.restart(lab.deploy.serving)
    lab.producer.resume()
    return record("router-restart", start, SNIGATE, detail=f"{took:.2f} s", quiet=lab.quiet)


FAULTS = {f.__name__.replace("_", "-"): f for f in (
    gateway_rolling, gateway_restart, sidecar_restart, redis_restart, postgres_restart,
    partition, router_reload, router_restart)}

# Faults that replace a gateway or sidecar process: the soak's last part leaves them out, so
# the processes whose RSS and fds are compared have lived through many other faults.
REPLACING = ("gateway-rolling", "gateway-restart", "sidecar-restart")

assert SHUTDOWN_DELAY > PROPAGATION[1]
