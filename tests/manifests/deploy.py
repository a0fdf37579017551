"""Offline checks of deploy/ (run by tests/manifests/check.sh): the systemd unit passes
`systemd-analyze verify` and keeps its hardening; the compose file passes `docker-compose
config` (the Compose schema, no engine needed) and pairs the worker with the sidecar; the
sidecar config the compose file mounts passes `snigate sidecar --check`.

  deploy.py SNIGATE_BIN

`systemd-analyze verify` needs no running systemd: the unit file, the executables it names
and the units it refers to (from the systemd package). It only warns about unknown keys or
values ("..., ignoring") and still exits 0, so any output is a failure here; each check also
proves that on a broken copy.
"""
import ipaddress
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from common import REPO, Failed, require, run_check

UNIT = REPO / "deploy" / "systemd" / "snigate-sidecar.service"
COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"
INSTALLED = "/usr/local/bin/snigate"
HARDENING = {
    "Type": "notify", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
}


def tool(name, package):
    exe = shutil.which(name)
    require(exe, f"{name} is not installed (Debian package {package}; scripts/install-deps.sh)")
    return exe


def unit_settings(text):
    """{key: last value} of the [Service] section."""
    settings, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


def verify_unit(text, binary):
    """Output of `systemd-analyze verify` on `text`, with ExecStart moved to the built
    binary (verify wants the executable to exist); empty when the unit is clean."""
    require(f"ExecStart={INSTALLED} sidecar --config " in text,
            f"{UNIT.name}: ExecStart must run {INSTALLED} sidecar --config FILE")
    with tempfile.TemporaryDirectory(prefix="snigate-unit.") as tmp:
        unit = Path(tmp) / UNIT.name
        unit.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={Path(binary).resolve()} "))
        proc = subprocess.run([tool("systemd-analyze", "systemd"), "verify", str(unit)],
                              capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    return output if proc.returncode == 0 else f"exit {proc.returncode}\n{output}"


def check_unit(binary):
    text = UNIT.read_text()
    output = verify_unit(text, binary)
    require(not output, f"systemd-analyze verify {UNIT.name}:\n{output}")
    broken = text.replace("ProtectSystem=strict", "ProtectSytem=strict")
    require(verify_unit(broken, binary), "systemd-analyze verify did not notice a misspelt key")
    settings = unit_settings(text)
    for key, want in HARDENING.items():
        require(settings.get(key) == want, f"{UNIT.name}: set {key}={want}")
    require(settings.get("User") or settings.get("DynamicUser") == "yes",
            f"{UNIT.name}: run as a service user (User=) or DynamicUser=yes")
    require("-HUP" in settings.get("ExecReload", ""), f"{UNIT.name}: ExecReload sends SIGHUP")
    require(settings.get("Restart") in ("on-failure", "always"), f"{UNIT.name}: set Restart=")


def compose_config(path):
    proc = subprocess.run([tool("docker-compose", "docker-compose"), "-f", str(path), "config", "-q"],
                          capture_output=True, text=True, cwd=path.parent)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_compose_schema():
    code, output = compose_config(COMPOSE)
    require(code == 0 and not output, f"docker-compose config {COMPOSE.name}:\n{output}")
    with tempfile.TemporaryDirectory(prefix="snigate-compose.") as tmp:
        broken = Path(tmp) / COMPOSE.name
        broken.write_text(COMPOSE.read_text().replace("read_only: true", "read_only: true\n    readonly: true"))
        require(compose_config(broken)[0] != 0, "docker-compose config accepted an unknown key")


def check_compose_pairing(binary):
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    sidecars = [n for n, s in services.items() if "sidecar" in s.get("command", [])]
    require(len(sidecars) == 1, "compose: exactly one snigate sidecar service")
    sidecar = services[sidecars[0]]
    workers = [s for n, s in services.items() if n not in sidecars]
    require(workers, "compose: no worker service")
    for worker in workers:
        require(worker.get("network_mode") == f"service:{sidecars[0]}",
                "compose: the worker must share the sidecar's network (network_mode: service:...)")
        require(sidecars[0] in worker.get("depends_on", []), "compose: the worker depends_on the sidecar")
    for port in sidecar.get("ports", []):
        require(str(port).startswith("127.0.0.1:"), f"compose: {port} publishes beyond the VM's loopback")
    mounts = dict(v.split(":")[:2] for v in sidecar["volumes"])
    config_path = sidecar["command"][sidecar["command"].index("--config") + 1]
    local = next((host for host, inside in mounts.items() if inside == config_path), None)
    require(local, f"compose: no volume provides {config_path}")
    config = yaml.safe_load((COMPOSE.parent / local).read_text())
    for tunnel in config["tunnels"]:
        host = tunnel["listen"].rsplit(":", 1)[0].strip("[]")
        require(ipaddress.ip_address(host).is_loopback, f"compose sidecar: {tunnel['listen']} is not loopback")
    hosts = [t.get("server_name", t["connect"].rsplit(":", 1)[0]) for t in config["tunnels"]]
    run_check(binary, "sidecar", config, hosts, "worker.example.com")


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    binary = argv[0]
    checks = [
        ("systemd-analyze verify on the sidecar unit; hardening, notify, reload", lambda: check_unit(binary)),
        ("docker-compose config (Compose schema) on deploy/compose", check_compose_schema),
        ("compose: worker in the sidecar's network, loopback only, sidecar --check",
         lambda: check_compose_pairing(binary)),
    ]
    failed = 0
    for name, fn in checks:
        try:
            fn()
            print(f"ok - {name}")
        except (Failed, KeyError, subprocess.CalledProcessError) as e:
            failed += 1
            print(f"FAIL - {name}\n    " + str(e).replace("\n", "\n    "))
    print(f"deploy: {len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
