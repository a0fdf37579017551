"""What the manifest checks share: where things are, loading, and small predicates."""
import copy
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OPENSHIFT = REPO / "openshift"
CRD = HERE / "route.openshift.io_routes.crd.yaml"
PYTHON = sys.executable
K8S_VERSIONS = ["1.29", None]  # None: the newest schemas kubernetes-validate ships
ROUTER_NAMESPACE_LABEL = "policy-group.network.openshift.io/ingress"
DEFAULT_TUNNEL_TIMEOUT_S = 3600


class Failed(Exception):
    pass


def require(cond, message):
    if not cond:
        raise Failed(message)


# ---------------------------------------------------------------- loading

def manifest_files():
    return sorted(p for p in OPENSHIFT.rglob("*.yaml"))


def load_docs(files):
    """[(path, doc)] for every non-empty YAML document."""
    out = []
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    out.append((path, doc))
    return out


def kind(docs, k, directory=None):
    return [d for p, d in docs if d.get("kind") == k and (directory is None or p.parent == directory)]


def one(items, what):
    require(len(items) == 1, f"expected exactly one {what}, found {len(items)}")
    return items[0]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def duration_seconds(text):
    m = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)", str(text))
    require(m, f"'{text}' is not an HAProxy duration such as 24h")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def container_port(container, name_or_number):
    for port in container.get("ports", []):
        if name_or_number in (port.get("name"), port.get("containerPort")):
            return port["containerPort"]
    raise Failed(f"container {container['name']} has no port {name_or_number}")


def run_check(binary, role, config, server_names, client_name):
    """`snigate ROLE --check` on `config` with every tls.* path moved into a temp dir that
    holds throwaway certificates from `snigate certs`."""
    with tempfile.TemporaryDirectory(prefix="snigate-manifests.") as tmp:
        cmd = [binary, "certs", "--out", tmp, "--client-name", client_name]
        for name in server_names:
            cmd += ["--server-name", name]
        subprocess.run(cmd, check=True, capture_output=True)
        rewritten = copy.deepcopy(config)
        source = {"cert": "server.crt", "key": "server.key", "client_ca": "ca.crt", "ca": "ca.crt"}
        if role == "sidecar":
            source.update(cert="client.crt", key="client.key")
        for field, path in config["tls"].items():
            target = Path(tmp) / ("tls-" + Path(path).name)
            target.write_bytes((Path(tmp) / source[field]).read_bytes())
            target.chmod(0o600)
            rewritten["tls"][field] = str(target)
        for i, route in enumerate(rewritten.get("routes", [])):
            if "login" in route:
                target = Path(tmp) / f"login-{i}"
                target.write_text("throwaway\n")
                route["login"]["password_file"] = str(target)
        cfg = Path(tmp) / f"{role}.yaml"
        cfg.write_text(yaml.safe_dump(rewritten))
        proc = subprocess.run([binary, role, "--config", str(cfg), "--check"],
                              capture_output=True, text=True)
        require(proc.returncode == 0,
                f"snigate {role} --check refuses the ConfigMap's config:\n{proc.stderr.strip()}")
