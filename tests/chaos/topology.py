"""The two "clusters": network namespaces joined by a veth pair, with nftables rules.

  private  10.77.0.2   Celery workers, the snigate sidecar. May dial only the router's :443,
                       and (bare baseline) the TLS ports of Redis and PostgreSQL on 10.77.0.3.
  public   10.77.0.1   the router (HAProxy :443); gateways, Redis and PostgreSQL on loopback.
           10.77.0.3   the bare baseline's address: Redis TLS :6380 and PostgreSQL :5432
                       (hostssl only). Plaintext Redis also listens there (Redis has one bind
                       list for both ports); the private side's rules never let it through.

A partition drops every packet between the two, both ways, in the private namespace: open
connections stall (nothing is reset) and heal when the rules go away.
"""
import os
import shutil

from procs import Failure, run

ROUTER_IP = "10.77.0.1"
PRIVATE_IP = "10.77.0.2"
BARE_IP = "10.77.0.3"
REDIS_HOST = "redis-chaos.apps.snigate.test"
PG_HOST = "postgres-chaos.apps.snigate.test"
BARE_REDIS_HOST = "redis-bare.snigate.test"
BARE_PG_HOST = "postgres-bare.snigate.test"
BARE_REDIS_TLS_PORT = 6380
PG_PORT = 5432

PRIVATE_RULES = """
table inet chaos {{
    chain output {{
        type filter hook output priority 0; policy drop;
        oif "lo" accept
        ct state established,related accept
        ip daddr {router} tcp dport 443 accept
        ip daddr {bare} tcp dport {{ {redis_tls}, {pg} }} accept
    }}
    chain input {{
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
    }}
}}
"""

PARTITION_RULES = """
table inet chaos_partition {{
    chain output {{
        type filter hook output priority -10; policy accept;
        ip daddr {net} drop
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        ip saddr {net} drop
    }}
}}
"""


class Topology:
    """Creates the namespaces on `up()`; `down()` removes everything it made."""

    def __init__(self, tag):
        self.pub = f"snigate-chaos-public-{tag}"
        self.priv = f"snigate-chaos-private-{tag}"
        self.made = []
        self.partitioned = False

    def up(self):
        for ns in (self.pub, self.priv):
            done = run(["ip", "netns", "add", ns], check=False)
            if done.returncode != 0:
                raise Failure(f"cannot create network namespace {ns} ('ip netns add' said: "
                              f"{done.stderr.strip()}); the chaos suite needs root with "
                              "CAP_SYS_ADMIN and CAP_NET_ADMIN")
            self.made.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "link", "add", "chaos-pub", "netns", self.pub, "type", "veth",
             "peer", "name", "chaos-priv", "netns", self.priv])
        run(["ip", "-n", self.pub, "addr", "add", f"{ROUTER_IP}/24", "dev", "chaos-pub"])
        run(["ip", "-n", self.pub, "addr", "add", f"{BARE_IP}/24", "dev", "chaos-pub"])
        run(["ip", "-n", self.priv, "addr", "add", f"{PRIVATE_IP}/24", "dev", "chaos-priv"])
        run(["ip", "-n", self.pub, "link", "set", "chaos-pub", "up"])
        run(["ip", "-n", self.priv, "link", "set", "chaos-priv", "up"])
        self.nft(self.priv, PRIVATE_RULES.format(router=ROUTER_IP, bare=BARE_IP,
                                                 redis_tls=BARE_REDIS_TLS_PORT, pg=PG_PORT))
        # `ip netns exec` mounts /etc/netns/NAME/hosts over /etc/hosts: the private side's DNS.
        os.makedirs(f"/etc/netns/{self.priv}", exist_ok=True)
        with open(f"/etc/netns/{self.priv}/hosts", "w") as f:
            f.write(f"127.0.0.1 localhost\n{ROUTER_IP} {REDIS_HOST} {PG_HOST}\n"
                    f"{BARE_IP} {BARE_REDIS_HOST} {BARE_PG_HOST}\n")

    @staticmethod
    def nft(ns, rules):
        done = run(["nft", "-f", "-"], ns=ns, check=False, stdin=rules)
        if done.returncode != 0:
            raise Failure(f"nftables rules in {ns} failed (is nf_tables available?): "
                          f"{done.stderr.strip()}")

    def partition(self):
        self.nft(self.priv, PARTITION_RULES.format(net=f"{ROUTER_IP.rsplit('.', 1)[0]}.0/24"))
        self.partitioned = True

    def heal(self):
        run(["nft", "delete", "table", "inet", "chaos_partition"], ns=self.priv)
        self.partitioned = False

    def down(self):
        """Kill what still runs inside our namespaces, delete them and their /etc/netns."""
        for ns in reversed(self.made):
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "delete", ns], check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self.made.clear()
