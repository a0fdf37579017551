"""Checks of openshift/monitoring/ (imported by check.py): the ServiceMonitor and PodMonitor
reach the admin ports, the alert rules pass `promtool check rules` and their promtool unit
tests (rules.test.yaml, run on the PrometheusRule's spec), and every dashboard query parses.
"""
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from common import HERE, OPENSHIFT, Failed, container_port, kind, one, require, selects

MONITORING = OPENSHIFT / "monitoring"
DASHBOARD = MONITORING / "console-dashboard" / "snigate.json"
RULE_TESTS = HERE / "rules.test.yaml"
MONITORING_NAMESPACES = "network.openshift.io/policy-group"


def promtool(*args):
    exe = shutil.which("promtool")
    require(exe, "promtool is not installed (Debian package prometheus; scripts/install-deps.sh)")
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    require(proc.returncode == 0, f"promtool {' '.join(args)}:\n{(proc.stdout + proc.stderr).strip()}")


def rule_groups(docs):
    rule = one(kind(docs, "PrometheusRule", MONITORING), "PrometheusRule in openshift/monitoring/")
    return rule["spec"]


def check_rules(docs):
    with tempfile.TemporaryDirectory(prefix="snigate-rules.") as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(yaml.safe_dump(rule_groups(docs)))
        promtool("check", "rules", str(rules))


def check_rule_tests(docs):
    """rules.test.yaml names its rule file rules.yaml, relative to itself."""
    with tempfile.TemporaryDirectory(prefix="snigate-rules.") as tmp:
        (Path(tmp) / "rules.yaml").write_text(yaml.safe_dump(rule_groups(docs)))
        tests = Path(tmp) / RULE_TESTS.name
        shutil.copy(RULE_TESTS, tests)
        promtool("test", "rules", str(tests))


def dashboard_queries(dashboard=None):
    """Every target expression of every panel (rows included)."""
    dashboard = dashboard or json.loads(DASHBOARD.read_text())
    panels = list(dashboard["panels"])
    queries = []
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        require(targets, f"dashboard panel {panel.get('title')!r} has no query")
        queries.extend(t["expr"] for t in targets)
    return queries


def check_dashboard():
    """Each query becomes a recording rule, so promtool's parser checks its PromQL."""
    dashboard = json.loads(DASHBOARD.read_text())
    require(dashboard.get("title") and dashboard.get("uid"), "dashboard: set title and uid")
    rules = [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(dashboard_queries(dashboard))]
    with tempfile.TemporaryDirectory(prefix="snigate-dashboard.") as tmp:
        path = Path(tmp) / "dashboard-queries.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        promtool("check", "rules", str(path))


def check_monitors(docs, pub):
    """The ServiceMonitor reaches the gateway's admin port through its metrics Service, the
    PodMonitor the sidecar's admin port in the worker pods, and the NetworkPolicy lets the
    monitoring stack in."""
    sm = one(kind(docs, "ServiceMonitor", MONITORING), "ServiceMonitor in openshift/monitoring/")
    services = [s for s in kind(docs, "Service", MONITORING)
                if selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
    service = one(services, "Service selected by the ServiceMonitor")
    require(selects({"matchLabels": service["spec"]["selector"]}, pub.pod_labels),
            f"Service {service['metadata']['name']} does not select the gateway pods")
    require(not selects(sm["spec"]["selector"], pub.service["metadata"].get("labels", {})),
            "the ServiceMonitor also selects the TLS Service the Routes use")
    admin = container_port(pub.container, "admin")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        port = ports.get(endpoint.get("port"))
        require(port, f"ServiceMonitor port {endpoint.get('port')!r} is not a port of {service['metadata']['name']}")
        require(container_port(pub.container, port.get("targetPort", port["port"])) == admin,
                "the ServiceMonitor does not reach the gateway's admin port")
        require(endpoint.get("path", "/metrics") == "/metrics", "ServiceMonitor: path /metrics")
    check_pod_monitor(docs)
    check_monitoring_ingress(docs, pub, admin)


def check_pod_monitor(docs):
    pm = one(kind(docs, "PodMonitor", MONITORING), "PodMonitor in openshift/monitoring/")
    worker = one(kind(docs, "Deployment", OPENSHIFT / "worker"), "worker Deployment")
    template = worker["spec"]["template"]
    require(selects(pm["spec"]["selector"], template["metadata"]["labels"]),
            "the PodMonitor does not select the worker pods")
    sidecar = one([c for c in template["spec"].get("initContainers", []) if "sidecar" in c.get("args", [])],
                  "snigate sidecar in the worker pod")
    for endpoint in pm["spec"]["podMetricsEndpoints"]:
        require(endpoint.get("port") == "admin" and container_port(sidecar, "admin"),
                "the PodMonitor must scrape the sidecar's port named admin")
        require(endpoint.get("path", "/metrics") == "/metrics", "PodMonitor: path /metrics")


def check_monitoring_ingress(docs, pub, admin):
    for policy in kind(docs, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], pub.pod_labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = [p.get("port") for p in rule.get("ports", [])]
            peers = [p.get("namespaceSelector", {}).get("matchLabels", {}) for p in rule.get("from", [])]
            if admin in ports and any(p.get(MONITORING_NAMESPACES) == "monitoring" for p in peers):
                return
    raise Failed(f"no NetworkPolicy admits the monitoring namespaces to the gateway's port {admin}")


def checks(docs, pub):
    """(name, function) of the monitoring checks, for check.py's properties()."""
    return [
        ("monitoring: ServiceMonitor and PodMonitor reach the admin ports, NetworkPolicy admits them",
         lambda: check_monitors(docs, pub)),
        ("monitoring: promtool check rules on the PrometheusRule", lambda: check_rules(docs)),
        ("monitoring: promtool test rules (tests/manifests/rules.test.yaml)", lambda: check_rule_tests(docs)),
        ("monitoring: every dashboard query parses", check_dashboard),
    ]
