"""Offline checks of the OpenShift manifests in openshift/ (run by tests/manifests/check.sh).

  check.py SNIGATE_BIN            every check; exit 1 when one fails
  check.py --self-test SNIGATE_BIN   the property checks must catch broken copies of the manifests

Checks: yamllint; `kubernetes-validate --strict` for the core kinds (at Kubernetes 1.29, the
first with native sidecars, and at the newest the package knows); every Route against the
Route CRD's schema (vendored next to this file); and the properties this deployment depends on
(`properties()` below), including `snigate gateway --check` / `snigate sidecar --check` on the
configs the ConfigMaps carry, with throwaway certificates at the paths they name.
"""
import copy
import ipaddress
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

import monitoring
from common import (CRD, DEFAULT_TUNNEL_TIMEOUT_S, HERE, K8S_VERSIONS, OPENSHIFT, PYTHON, REPO,
                    ROUTER_NAMESPACE_LABEL, Failed, container_port, duration_seconds, kind,
                    load_docs, manifest_files, one, require, run_check, selects)


# ---------------------------------------------------------------- the public side

class Public:
    """The gateway's objects in openshift/ and the config its ConfigMap carries."""

    def __init__(self, docs):
        self.docs = docs
        deployments = [d for d in kind(docs, "Deployment", OPENSHIFT)]
        self.deployment = one(deployments, "gateway Deployment in openshift/")
        self.pod = self.deployment["spec"]["template"]["spec"]
        self.pod_labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        self.container = one(self.pod["containers"], "container in the gateway pod")
        services = [s for s in kind(docs, "Service", OPENSHIFT)
                    if selects({"matchLabels": s["spec"].get("selector", {})}, self.pod_labels)]
        self.service = one(services, "Service selecting the gateway pods")
        self.routes = kind(docs, "Route")
        self.config_map, self.config_key, self.config_path = config_from_mounts(
            docs, self.pod, self.container, OPENSHIFT)
        self.config = yaml.safe_load(self.config_map["data"][self.config_key])


def config_from_mounts(docs, pod, container, directory):
    """The ConfigMap, key and path of the file named by `--config PATH` in the args."""
    args = container.get("args", [])
    require("--config" in args, f"{container['name']}: args lack --config")
    path = args[args.index("--config") + 1]
    mount = mount_for(container, path)
    volume = volume_named(pod, mount["name"])
    require("configMap" in volume, f"{path} is not on a ConfigMap volume")
    key = os.path.relpath(path, mount["mountPath"])
    cms = [c for c in kind(docs, "ConfigMap", directory)
           if c["metadata"]["name"] == volume["configMap"]["name"]]
    cm = one(cms, f"ConfigMap {volume['configMap']['name']}")
    require(key in cm.get("data", {}), f"ConfigMap {cm['metadata']['name']} has no key {key}")
    return cm, key, path


def mount_for(container, path):
    mounts = [m for m in container.get("volumeMounts", [])
              if path.startswith(m["mountPath"].rstrip("/") + "/")]
    require(mounts, f"{container['name']}: no volumeMount holds {path}")
    return max(mounts, key=lambda m: len(m["mountPath"]))


def volume_named(pod, name):
    return one([v for v in pod.get("volumes", []) if v["name"] == name], f"volume {name}")


def secret_files(volume):
    """{file name: (secret name, key)} that a secret or projected volume provides."""
    files = {}
    sources = []
    if "secret" in volume:
        sources.append(volume["secret"] | {"name": volume["secret"]["secretName"]})
    for src in volume.get("projected", {}).get("sources", []):
        if "secret" in src:
            sources.append(src["secret"])
    require(sources, f"volume {volume['name']} holds no Secret")
    for src in sources:
        items = src.get("items")
        require(items, f"Secret {src['name']} in volume {volume['name']}: list its items "
                       "(the file names the config relies on)")
        for item in items:
            files[item["path"]] = (src["name"], item["key"])
    return files


def check_tls_paths(pod, container, tls):
    """Every tls.* path of a config is a file some Secret volume provides."""
    for field, path in tls.items():
        check_secret_path(pod, container, f"tls.{field}", path)


def check_secret_path(pod, container, key, path):
    """`path` is a file some Secret volume provides, mounted whole (a subPath mount would
    never see the Secret's updates)."""
    mount = mount_for(container, path)
    require("subPath" not in mount, f"{key} {path}: volume {mount['name']} is mounted by subPath")
    files = secret_files(volume_named(pod, mount["name"]))
    rel = os.path.relpath(path, mount["mountPath"])
    require(rel in files, f"{key} {path}: volume {mount['name']} has no file {rel}")


def password_files(config):
    """(key, path) of every routes[].login.password_file of a gateway config."""
    return [(f"routes[{i}].login.password_file", r["login"]["password_file"])
            for i, r in enumerate(config.get("routes", [])) if "login" in r]


# ---------------------------------------------------------------- properties

def check_routes(pub):
    require(pub.routes, "no Route in openshift/")
    service_ports = {p.get("name"): p for p in pub.service["spec"]["ports"]}
    for route in pub.routes:
        name, spec = route["metadata"]["name"], route["spec"]
        require(spec.get("tls", {}).get("termination") == "passthrough",
                f"Route {name}: tls.termination must be passthrough (the gateway terminates TLS)")
        require(spec["to"].get("kind", "Service") == "Service"
                and spec["to"]["name"] == pub.service["metadata"]["name"],
                f"Route {name}: must target Service {pub.service['metadata']['name']}")
        require(not spec.get("alternateBackends"), f"Route {name}: no alternateBackends")
        target = spec.get("port", {}).get("targetPort")
        require(target in service_ports,
                f"Route {name}: port.targetPort {target!r} is not a named port of the Service")
        svc_target = service_ports[target].get("targetPort", service_ports[target]["port"])
        listen_port = int(pub.config["listen"].rsplit(":", 1)[1])
        require(container_port(pub.container, svc_target) == listen_port,
                f"Route {name}: reaches container port {svc_target}, the gateway listens on {listen_port}")
        timeout = route["metadata"].get("annotations", {}).get(
            "haproxy.router.openshift.io/timeout-tunnel")
        require(timeout, f"Route {name}: set haproxy.router.openshift.io/timeout-tunnel")
        require(duration_seconds(timeout) >= DEFAULT_TUNNEL_TIMEOUT_S,
                f"Route {name}: timeout-tunnel {timeout} is below the router's default 1h")
    hosts = sorted(r["spec"]["host"].lower() for r in pub.routes)
    names = sorted(n.lower() for r in pub.config["routes"] for n in r["server_names"])
    require(hosts == names, f"Route hosts {hosts} != the gateway's server_names {names}")


def check_gateway_config(pub, binary):
    cfg = pub.config
    require(cfg["listen"].startswith("0.0.0.0:"), "gateway listen must be 0.0.0.0:PORT in a pod")
    require("admin" in cfg, "gateway config: set admin (the probes use it)")
    admin_port = int(cfg["admin"].rsplit(":", 1)[1])
    require(container_port(pub.container, "admin") == admin_port,
            "the container port named admin differs from the config's admin port")
    for route in cfg["routes"]:
        host = route["backend"].rsplit(":", 1)[0]
        try:
            ipaddress.ip_address(host.strip("[]"))
            raise Failed(f"route {route['name']}: backend {route['backend']} is an IP; "
                         "use the Service name")
        except ValueError:
            pass
    require(cfg["tls"].get("client_ca"), "gateway config: set tls.client_ca (mutual TLS)")
    check_tls_paths(pub.pod, pub.container, cfg["tls"])
    for key, path in password_files(cfg):
        check_secret_path(pub.pod, pub.container, key, path)
    allow = [a for r in cfg["routes"] for a in r.get("allow", []) if a.startswith("dns:")]
    names = [n for r in cfg["routes"] for n in r["server_names"]]
    run_check(binary, "gateway", cfg, names, allow[0][4:] if allow else "worker.example.com")


def check_gateway_pod(pub):
    dep, pod, c = pub.deployment, pub.pod, pub.container
    require(dep["spec"].get("replicas", 1) >= 2, "gateway: at least 2 replicas")
    sc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    require(sc.get("runAsNonRoot") or csc.get("runAsNonRoot"), "gateway: runAsNonRoot")
    require("runAsUser" not in sc and "runAsUser" not in csc,
            "gateway: no runAsUser (OpenShift assigns an arbitrary UID)")
    require(csc.get("readOnlyRootFilesystem") is True, "gateway: readOnlyRootFilesystem")
    require(csc.get("allowPrivilegeEscalation") is False, "gateway: allowPrivilegeEscalation false")
    require("ALL" in csc.get("capabilities", {}).get("drop", []), "gateway: drop ALL capabilities")
    res = c.get("resources", {})
    for part, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
        for k in keys:
            require(k in res.get(part, {}), f"gateway: resources.{part}.{k}")
    admin = container_port(c, "admin")
    for probe, path in (("startupProbe", "/startup"), ("livenessProbe", "/livez"),
                        ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        require(get.get("path") == path and container_port(c, get.get("port")) == admin,
                f"gateway: {probe} must GET {path} on the admin port")
    timeouts = pub.config.get("timeouts", {})
    drain = duration_seconds(timeouts.get("drain", "30s"))
    delay = duration_seconds(timeouts.get("shutdown_delay", "0s"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    require(grace > drain + delay,
            f"gateway: terminationGracePeriodSeconds {grace} must exceed shutdown_delay + drain "
            f"({delay:g} s + {drain:g} s)")


def check_no_key_material(files):
    for path in files:
        text = path.read_text()
        require("PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text,
                f"{path.relative_to(REPO)} embeds PEM material; create Secrets with oc create secret")
    for path, doc in load_docs(files):
        require(doc.get("kind") != "Secret",
                f"{path.relative_to(REPO)}: Secrets are created by hand (README), not committed")


def check_network_policies(pub):
    policies = kind(pub.docs, "NetworkPolicy")
    gw = [p for p in policies if selects(p["spec"]["podSelector"], pub.pod_labels)]
    require(gw, "no NetworkPolicy selects the gateway pods")
    listen_port = int(pub.config["listen"].rsplit(":", 1)[1])
    for p in gw:
        require("Ingress" in p["spec"].get("policyTypes", ["Ingress"]), "gateway policy: Ingress")
        for rule in p["spec"].get("ingress", []):
            ports = [x.get("port") for x in rule.get("ports", [])]
            require(ports, f"{p['metadata']['name']}: every rule names its ports")
            if listen_port in ports or "tls" in ports:
                for peer in rule.get("from", []):
                    require(set(peer) == {"namespaceSelector"} and ROUTER_NAMESPACE_LABEL in
                            peer["namespaceSelector"].get("matchLabels", {}),
                            f"{p['metadata']['name']}: port {listen_port} open to {peer}, "
                            "only the router's namespace may reach it")
                require(rule.get("from"), f"{p['metadata']['name']}: port {listen_port} open to all")
    backends = {r["backend"].rsplit(":", 1)[0]: int(r["backend"].rsplit(":", 1)[1])
                for r in pub.config["routes"]}
    for service, port in backends.items():
        pols = [p for p in policies if p["spec"]["podSelector"].get("matchLabels", {})
                .get("app.kubernetes.io/name") == service]
        require(pols, f"no NetworkPolicy for the {service} pods")
        for p in pols:
            for rule in p["spec"].get("ingress", []):
                require([x.get("port") for x in rule.get("ports", [])] == [port],
                        f"{p['metadata']['name']}: allow only port {port}")
                peers = rule.get("from", [])
                require(peers, f"{p['metadata']['name']}: open to everyone")
                require(any(selects(x.get("podSelector"), pub.pod_labels) for x in peers),
                        f"{p['metadata']['name']}: the gateway must reach {service}")
                for x in peers:
                    require(set(x) == {"podSelector"}, f"{p['metadata']['name']}: peer {x} is "
                            "outside the project's own pods")


def check_pdb(pub):
    pdbs = [p for p in kind(pub.docs, "PodDisruptionBudget")
            if selects(p["spec"]["selector"], pub.pod_labels)]
    pdb = one(pdbs, "PodDisruptionBudget for the gateway")
    require(pdb["spec"].get("minAvailable", 0) >= 1
            and pdb["spec"]["minAvailable"] < pub.deployment["spec"]["replicas"],
            "gateway PDB: 1 <= minAvailable < replicas (else node drains block)")


def check_worker(docs, pub, binary):
    directory = OPENSHIFT / "worker"
    dep = one(kind(docs, "Deployment", directory), "worker Deployment in openshift/worker/")
    pod = dep["spec"]["template"]["spec"]
    sidecars = [c for c in pod.get("initContainers", []) if "sidecar" in c.get("args", [])]
    sidecar = one(sidecars, "snigate sidecar among the worker's initContainers")
    require(sidecar.get("restartPolicy") == "Always",
            "worker: the sidecar needs restartPolicy: Always (a native sidecar)")
    require(sidecar.get("startupProbe"), "worker: the sidecar needs a startupProbe "
            "(the worker starts once it passes)")
    require(not any("sidecar" in c.get("args", []) for c in pod["containers"]),
            "worker: snigate must not be an ordinary container (it would not start first)")
    cm, key, _ = config_from_mounts(docs, pod, sidecar, directory)
    cfg = yaml.safe_load(cm["data"][key])
    hosts = {r["spec"]["host"].lower() for r in pub.routes}
    for tunnel in cfg["tunnels"]:
        host = tunnel["listen"].rsplit(":", 1)[0].strip("[]")
        require(ipaddress.ip_address(host).is_loopback,
                f"sidecar tunnel {tunnel['name']}: listen {tunnel['listen']} is not loopback")
        require(not tunnel.get("allow_non_loopback"),
                f"sidecar tunnel {tunnel['name']}: allow_non_loopback must stay off")
        connect_host, connect_port = tunnel["connect"].rsplit(":", 1)
        sni = tunnel.get("server_name", connect_host).lower()
        require(connect_port == "443" and sni in hosts,
                f"sidecar tunnel {tunnel['name']}: connect {tunnel['connect']} is not a Route host:443")
    admin = int(cfg["admin"].rsplit(":", 1)[1]) if "admin" in cfg else None
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = sidecar.get(probe, {}).get("httpGet")
        if get:
            require(container_port(sidecar, get["port"]) == admin,
                    f"sidecar {probe} is not on the config's admin port")
    check_tls_paths(pod, sidecar, cfg["tls"])
    run_check(binary, "sidecar", cfg, sorted(hosts), "worker.example.com")
    check_worker_urls(pod, pub)


def check_worker_urls(pod, pub):
    """With a gateway that logs in for the workers, no worker URL carries a password, and no
    worker container is handed one."""
    if not password_files(pub.config):
        return
    for c in pod["containers"]:
        for env in c.get("env", []):
            value = env.get("value", "")
            userinfo = value.split("://", 1)[1].split("@", 1)[0] if "://" in value and "@" in value else ""
            require(":" not in userinfo, f"worker {c['name']}: {env['name']} carries a password")
            require("secretKeyRef" not in env.get("valueFrom", {}),
                    f"worker {c['name']}: {env['name']} comes from a Secret; the gateway logs in")


def check_kustomizations():
    for kfile in OPENSHIFT.rglob("kustomization.yaml"):
        k = yaml.safe_load(kfile.read_text())
        listed = set(k.get("resources", []))
        for res in listed | set(k.get("components", [])):
            require((kfile.parent / res).exists(), f"{kfile.relative_to(REPO)}: {res} does not exist")
        here = {p.name for p in kfile.parent.glob("*.yaml")} - {"kustomization.yaml"}
        require(here <= listed, f"{kfile.relative_to(REPO)} does not list {sorted(here - listed)}")
        images = {i["name"] for i in k.get("images", [])}
        used = set()
        for _, doc in load_docs([kfile.parent / r for r in listed]):
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                used.add(c["image"])
        if used:  # components and the dashboard's kustomization run no containers
            require("snigate" in used and "snigate" in images,
                    f"{kfile.relative_to(REPO)}: images: must set the snigate image")


def check_containerfile():
    text = (OPENSHIFT / "Containerfile").read_text()
    stages = re.split(r"(?im)^FROM\s", text)[1:]
    require(len(stages) >= 2, "Containerfile: multi-stage (a builder and a runtime stage)")
    users = re.findall(r"(?im)^USER\s+(\S+)", stages[-1])
    require(users, "Containerfile: the runtime stage sets USER")
    uid = users[-1].split(":")[0]
    require(uid.isdigit() and int(uid) != 0,
            "Containerfile: USER must be a numeric non-root UID (runAsNonRoot checks it)")


def properties(docs, files, binary):
    """(name, function) of every property check over the loaded manifests."""
    pub = Public(docs)
    return [
        ("Routes are passthrough, target the gateway Service, set timeout-tunnel", lambda: check_routes(pub)),
        ("gateway ConfigMap config passes snigate gateway --check, paths on Secret mounts",
         lambda: check_gateway_config(pub, binary)),
        ("gateway pod: replicas, non-root, read-only, resources, probes, grace", lambda: check_gateway_pod(pub)),
        ("NetworkPolicies: router -> gateway, gateway and app -> Redis/PostgreSQL",
         lambda: check_network_policies(pub)),
        ("PodDisruptionBudget covers the gateway", lambda: check_pdb(pub)),
        ("worker: native sidecar, loopback-only tunnels, sidecar --check",
         lambda: check_worker(docs, pub, binary)),
        ("no Secret or key material committed", lambda: check_no_key_material(files)),
        *monitoring.checks(docs, pub),
    ]


# ---------------------------------------------------------------- schema checks

def check_yamllint(files):
    proc = subprocess.run([PYTHON, "-m", "yamllint", "--strict", "-c", str(HERE / "yamllint.yaml")]
                          + [str(f) for f in files], capture_output=True, text=True)
    require(proc.returncode == 0, proc.stdout.strip() or proc.stderr.strip())


def check_kubernetes_validate(docs):
    core = [(p, d) for p, d in docs if d.get("kind") not in ("Route", "Kustomization", "Component")
            and not d.get("apiVersion", "").startswith("monitoring.coreos.com/")]
    require(core, "no core-kind manifests found")
    with tempfile.TemporaryDirectory(prefix="snigate-kv.") as tmp:
        paths = []
        for i, (p, d) in enumerate(core):
            out = Path(tmp) / f"{i:02d}-{p.stem}-{d['kind']}.yaml"
            out.write_text(yaml.safe_dump(d))
            paths.append(str(out))
        for version in K8S_VERSIONS:
            cmd = [PYTHON, "-m", "kubernetes_validate", "--strict", "--quiet"]
            if version:
                cmd += ["-k", version]
            proc = subprocess.run(cmd + paths, capture_output=True, text=True)
            output = (proc.stdout + proc.stderr).strip()
            require(proc.returncode == 0 and "Couldn't find schema" not in output,
                    f"kubernetes-validate --strict (k8s {version or 'newest'}):\n{output}")


def route_schema():
    crd = yaml.safe_load(CRD.read_text())
    version = one([v for v in crd["spec"]["versions"] if v["name"] == "v1"], "v1 in the Route CRD")
    return strict(version["schema"]["openAPIV3Schema"], top=True)


def strict(schema, top=False):
    """OpenAPI v3 (structural) -> JSON Schema: int-or-string as anyOf, and unknown fields
    rejected like `oc apply --validate=strict` (where the schema lists the properties)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-validations")}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if top:
        out["properties"]["metadata"] = {"type": "object"}
    return out


def check_routes_schema(docs):
    validator = jsonschema.Draft7Validator(route_schema())
    routes = [d for _, d in docs if d.get("kind") == "Route"]
    require(routes, "no Route found")
    for r in routes:
        require(r.get("apiVersion") == "route.openshift.io/v1", f"Route {r['metadata']['name']}: apiVersion")
        errors = sorted(validator.iter_errors(r), key=lambda e: list(e.path))
        require(not errors, f"Route {r['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors))


# ---------------------------------------------------------------- self-test

def mutations():
    """(what must be caught, function that breaks a copy of the docs)."""
    def route(docs):
        return next(d for _, d in docs if d.get("kind") == "Route")

    def gw(docs):
        return Public(docs)

    def sidecar_cfg(docs, edit):
        cm = next(d for p, d in docs if d.get("kind") == "ConfigMap" and p.parent.name == "worker")
        cfg = yaml.safe_load(cm["data"]["sidecar.yaml"])
        edit(cfg)
        cm["data"]["sidecar.yaml"] = yaml.safe_dump(cfg)

    def gw_cfg(docs, edit):
        pub = gw(docs)
        cfg = yaml.safe_load(pub.config_map["data"][pub.config_key])
        edit(cfg)
        pub.config_map["data"][pub.config_key] = yaml.safe_dump(cfg)

    def worker(docs):
        return next(d for p, d in docs if d.get("kind") == "Deployment" and p.parent.name == "worker")

    def monitor(docs, k):
        return next(d for _, d in docs if d.get("kind") == k)

    def alert(docs, name):
        groups = monitor(docs, "PrometheusRule")["spec"]["groups"]
        return next(r for g in groups for r in g["rules"] if r.get("alert") == name)

    def gateway_policy(docs):
        return next(d for _, d in docs if d.get("kind") == "NetworkPolicy"
                    and d["metadata"]["name"] == "snigate-gateway-ingress")

    return [
        ("ServiceMonitor on the TLS port",
         lambda d: monitor(d, "ServiceMonitor")["spec"]["endpoints"][0].update(port="tls")),
        ("metrics Service selecting other pods",
         lambda d: next(x for p, x in d if x.get("kind") == "Service" and p.parent.name == "monitoring")
         ["spec"]["selector"].update({"app.kubernetes.io/name": "redis"})),
        ("PodMonitor selecting no worker pod",
         lambda d: monitor(d, "PodMonitor")["spec"]["selector"]["matchLabels"].update(
             {"app.kubernetes.io/part-of": "nothing"})),
        ("monitoring namespaces kept from the admin port",
         lambda d: gateway_policy(d)["spec"]["ingress"].pop()),
        ("backend-down alert without its 2 minutes", lambda d: alert(d, "SnigateBackendDown").pop("for")),
        ("alert expression that does not parse",
         lambda d: alert(d, "SnigateReloadFailing").update(expr="snigate_last_reload_successful ==")),
        ("edge Route", lambda d: route(d)["spec"]["tls"].update(termination="edge")),
        ("Route to another Service", lambda d: route(d)["spec"]["to"].update(name="redis")),
        ("Route without timeout-tunnel", lambda d: route(d)["metadata"].pop("annotations")),
        ("Route host unknown to the gateway", lambda d: route(d)["spec"].update(host="x.example.com")),
        ("unknown key in the gateway config", lambda d: gw_cfg(d, lambda c: c.update(bogus=1))),
        ("cert path outside the Secret mount",
         lambda d: gw_cfg(d, lambda c: c["tls"].update(cert="/tmp/tls.crt"))),
        ("backend given as an IP",
         lambda d: gw_cfg(d, lambda c: c["routes"][0].update(backend="10.0.0.1:6379"))),
        ("grace period below the drain",
         lambda d: gw(d).pod.update(terminationGracePeriodSeconds=10)),
        ("writable root filesystem",
         lambda d: gw(d).container["securityContext"].update(readOnlyRootFilesystem=False)),
        ("fixed runAsUser", lambda d: gw(d).pod["securityContext"].update(runAsUser=1000)),
        ("liveness probe on the TLS port",
         lambda d: gw(d).container["livenessProbe"]["httpGet"].update(port="tls")),
        ("one replica", lambda d: gw(d).deployment["spec"].update(replicas=1)),
        ("gateway open to every namespace",
         lambda d: next(x for _, x in d if x.get("kind") == "NetworkPolicy")["spec"]["ingress"][0]
         .update({"from": [{"namespaceSelector": {}}]})),
        ("sidecar tunnel on 0.0.0.0",
         lambda d: sidecar_cfg(d, lambda c: c["tunnels"][0].update(listen="0.0.0.0:6379"))),
        ("sidecar tunnel to an IP:port",
         lambda d: sidecar_cfg(d, lambda c: c["tunnels"][0].update(connect="10.0.0.1:443"))),
        ("login password file outside the Secret mount",
         lambda d: gw_cfg(d, lambda c: c["routes"][0]["login"].update(password_file="/tmp/pw"))),
        ("password in a worker URL",
         lambda d: worker(d)["spec"]["template"]["spec"]["containers"][0]["env"][0]
         .update(value="redis://:secret@localhost:6379/0")),
        ("sidecar as an ordinary init container",
         lambda d: worker(d)["spec"]["template"]["spec"]["initContainers"][0].pop("restartPolicy")),
    ]


def self_test(files, binary):
    base = load_docs(files)
    for _, fn in properties(base, files, binary):
        fn()  # the real manifests pass
    missed = []
    for what, mutate in mutations():
        docs = copy.deepcopy(base)
        mutate(docs)
        caught = False
        try:
            for _, fn in properties(docs, files, binary):
                fn()
        except (Failed, KeyError, StopIteration):
            caught = True
        print(f"{'ok' if caught else 'FAIL'} - self-test: catches {what}")
        if not caught:
            missed.append(what)
    return missed


# ---------------------------------------------------------------- main

def main(argv):
    if len(argv) == 2 and argv[0] == "--self-test":
        files = manifest_files()
        missed = self_test(files, argv[1])
        n = len(mutations())
        print(f"manifests self-test: {n - len(missed)} passed, {len(missed)} failed")
        return 1 if missed else 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    binary = argv[0]
    files = manifest_files()
    docs = load_docs(files)
    checks = [
        ("yamllint --strict", lambda: check_yamllint(files + [HERE / "yamllint.yaml"])),
        ("kustomization.yaml lists every manifest and sets the snigate image", check_kustomizations),
        ("kubernetes-validate --strict (1.29 and newest) on the core kinds",
         lambda: check_kubernetes_validate(docs)),
        ("Routes match the Route CRD schema (unknown fields rejected)", lambda: check_routes_schema(docs)),
        ("Containerfile: multi-stage, numeric non-root USER", check_containerfile),
    ]
    try:
        checks += properties(docs, files, binary)
    except Failed as e:
        checks.append(("locate the gateway objects", lambda e=e: (_ for _ in ()).throw(e)))
    failed = 0
    for name, fn in checks:
        try:
            fn()
            print(f"ok - {name}")
        except (Failed, subprocess.CalledProcessError, KeyError, yaml.YAMLError) as e:
            failed += 1
            detail = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
            print(f"FAIL - {name}\n    " + detail.replace("\n", "\n    "))
    print(f"manifests: {len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
