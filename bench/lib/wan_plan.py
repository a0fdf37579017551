"""The WAN benchmark's plan (written by bench/wan.sh as plan.json): where each chain's client
side listens, and how a client of it connects, as libpq keywords, redis-py arguments, Celery
URLs and redis-benchmark flags. Stdlib only: every Python of the benchmark imports it.
"""
import json
from urllib.parse import quote, urlencode

REDIS_NAME = "redis.bench.test"
PG_NAME = "postgres.bench.test"


def load(path):
    with open(path) as f:
        return json.load(f)


def password(plan):
    with open(plan["password_file"]) as f:
        return f.read().strip()


def chain(plan, name):
    return plan["chains"][name]


def pg_params(plan, name, user):
    """libpq keywords for a new connection through chain `name` as `user` (scram | trust)."""
    c = chain(plan, name)
    params = {"port": c["pg"]["port"], "dbname": plan["db"], "user": plan["users"][user],
              "gssencmode": "disable", "connect_timeout": "20"}
    if user == "scram" and not c.get("login"):
        params["password"] = password(plan)
    if c["pg"]["tls"]:
        pki = plan["pki"]
        params.update(host=PG_NAME, hostaddr="127.0.0.1", sslmode="verify-full",
                      sslrootcert=pki["ca"], sslcert=pki["cert"], sslkey=pki["key"])
    else:
        # the TLS is the chain's: with the default `prefer` a peer would carry the SSLRequest
        # across (one more round trip) where the sidecar answers it locally
        params.update(host="127.0.0.1", sslmode="disable")
    return params


def redis_kwargs(plan, name):
    """redis.Redis() arguments for chain `name`."""
    c = chain(plan, name)
    kwargs = {"port": c["redis"]["port"], "socket_connect_timeout": 20, "socket_timeout": 60}
    if c["redis"]["tls"]:
        pki = plan["pki"]
        kwargs.update(host=REDIS_NAME, ssl=True, ssl_cert_reqs="required", ssl_ca_certs=pki["ca"],
                      ssl_certfile=pki["cert"], ssl_keyfile=pki["key"], ssl_check_hostname=True)
    else:
        kwargs["host"] = "127.0.0.1"
    return kwargs


def celery_broker(plan, name):
    """Celery broker URL and broker_use_ssl (None without TLS) for chain `name`."""
    c = chain(plan, name)
    if not c["redis"]["tls"]:
        return f"redis://127.0.0.1:{c['redis']['port']}/0", None
    pki = plan["pki"]
    ssl = {"ssl_cert_reqs": "required", "ssl_ca_certs": pki["ca"], "ssl_certfile": pki["cert"],
           "ssl_keyfile": pki["key"]}
    return f"rediss://{REDIS_NAME}:{c['redis']['port']}/0", ssl


def celery_backend(plan, name):
    """Celery result backend URL (SQLAlchemy, psycopg2) for chain `name`: the SCRAM user."""
    p = pg_params(plan, name, "scram")
    auth = quote(p.pop("user"), safe="")
    if "password" in p:
        auth += ":" + quote(p.pop("password"), safe="")
    host, port, db = p.pop("host"), p.pop("port"), p.pop("dbname")
    return f"db+postgresql+psycopg2://{auth}@{host}:{port}/{db}?{urlencode(p)}"


def direct_pg(plan, user="scram"):
    """libpq keywords for the server side's own connection to PostgreSQL (no link)."""
    return {"host": "127.0.0.1", "port": plan["direct"]["pg_port"], "dbname": plan["db"],
            "user": plan["users"][user], "password": password(plan), "sslmode": "disable"}


def direct_broker(plan):
    return f"redis://127.0.0.1:{plan['direct']['redis_port']}/0"


def redis_benchmark_args(plan, name):
    c = chain(plan, name)
    args = ["-h", "127.0.0.1", "-p", str(c["redis"]["port"])]
    if c["redis"]["tls"]:
        pki = plan["pki"]
        args += ["--tls", "--sni", REDIS_NAME, "--cacert", pki["ca"], "--cert", pki["cert"],
                 "--key", pki["key"]]
    return args
