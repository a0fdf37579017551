//! Backends that require passwords, and a gateway that logs in to them for its clients
//! (`login:`), shared by the login tests. The clients hold no password.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::support::pki::{CLIENT_NAME, PG_SNI, REDIS_SNI};
use crate::support::*;

/// The role / ACL user the gateway logs in as.
pub const USER: &str = "celery";
/// Its password, held by the gateway only.
pub const PASSWORD: &str = "Gw-Login-Pw-5e1d0c93";
/// The Redis `requirepass` of the default user, which nobody should need.
pub const DEFAULT_PASSWORD: &str = "Default-Pw-77ab21f0";

/// A password file the way a mounted Secret holds it, replaced atomically.
pub struct Secret {
    dir: TempDir,
}

impl Secret {
    pub fn new(password: &str) -> Secret {
        let dir = tempfile::Builder::new()
            .prefix("snigate-login-")
            .tempdir()
            .unwrap();
        let secret = Secret { dir };
        secret.set(password);
        secret
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// Replaces the contents with one rename, as the kubelet's `..data` swap does.
    pub fn set(&self, password: &str) {
        let tmp = self.dir.path().join("password.tmp");
        fs::write(&tmp, format!("{password}\n")).unwrap();
        fs::rename(&tmp, self.path()).unwrap();
    }
}

/// PostgreSQL whose TCP clients must authenticate with `method` (`scram-sha-256`, `md5`,
/// `password` or `trust`); role `celery` owns database `celery`. The harness itself uses the
/// Unix socket, trusted for `postgres` only.
pub fn postgres(method: &str) -> Postgres {
    let pg = Postgres::start();
    let encryption = if method == "md5" {
        "md5"
    } else {
        "scram-sha-256"
    };
    admin_sql(&pg, &format!("SET password_encryption = '{encryption}'; CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"));
    admin_sql(&pg, &format!("CREATE DATABASE {USER} OWNER {USER}"));
    fs::write(
        pg.dir.path().join("data/pg_hba.conf"),
        format!("local all postgres trust\nhost all all 127.0.0.1/32 {method}\n"),
    )
    .unwrap();
    assert_eq!(admin_sql(&pg, "select pg_reload_conf()"), "t");
    pg
}

/// psql as `postgres` over the Unix socket; trimmed unaligned output.
pub fn admin_sql(pg: &Postgres, sql: &str) -> String {
    admin_sql_in(pg, "postgres", sql)
}

/// `admin_sql` in database `db`.
pub fn admin_sql_in(pg: &Postgres, db: &str, sql: &str) -> String {
    let conninfo = format!(
        "host={} port={} user=postgres dbname={db}",
        pg.dir.path().display(),
        pg.port
    );
    let mut cmd = Command::new("psql");
    cmd.arg(conninfo)
        .args(["-XAtqv", "ON_ERROR_STOP=1", "-c", sql]);
    let out = run(&mut cmd, CMD);
    let (o, e) = texts(&out);
    assert!(out.status.success(), "admin psql failed: {e}");
    o.trim_end().to_owned()
}

/// redis-server with `requirepass` for `default` and the ACL user `celery` with the channels
/// Celery needs (`&*`: Redis 7's `acl-pubsub-default resetchannels` grants none otherwise).
pub fn redis() -> RedisServer {
    let redis = RedisServer::start();
    let mut admin = redis.direct();
    let _: () = ::redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                USER,
                "on",
                &format!(">{PASSWORD}"),
                "~*",
                "&*",
                "+@all",
            ][..],
        )
        .query(&mut admin)
        .unwrap();
    let _: () = ::redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", DEFAULT_PASSWORD][..])
        .query(&mut admin)
        .unwrap();
    redis
}

/// A direct client of `redis` as the default user (for checks the test makes itself).
pub fn redis_admin(redis: &RedisServer) -> ::redis::Connection {
    let url = format!("redis://:{DEFAULT_PASSWORD}@127.0.0.1:{}/", redis.port);
    ::redis::Client::open(url)
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Gateway (mTLS, allow the worker) with login routes `postgres` and/or `redis`, and a sidecar
/// with a tunnel for each.
pub struct Chain {
    pub gw: Gateway,
    pub sc: Sidecar,
    pub pki: Pki,
    pub secret: Secret,
}

impl Chain {
    pub fn start(pg: Option<&Postgres>, redis: Option<&RedisServer>, opts: &Opts) -> Chain {
        Chain::with_password(pg, redis, opts, PASSWORD)
    }

    /// Like `start`, with `password` in the gateway's password file.
    pub fn with_password(
        pg: Option<&Postgres>,
        redis: Option<&RedisServer>,
        opts: &Opts,
        password: &str,
    ) -> Chain {
        let pki = Pki::new();
        let secret = Secret::new(password);
        let allow = format!("dns:{CLIENT_NAME}");
        let mut routes = Vec::new();
        let mut tunnels = Vec::new();
        if let Some(pg) = pg {
            let route = Route::new(
                "postgres",
                PG_SNI,
                "postgres",
                format!("127.0.0.1:{}", pg.port),
            );
            routes.push(route.allow(&[&allow]).login(Some(USER), &secret.path()));
        }
        if let Some(redis) = redis {
            let route = Route::new("redis", REDIS_SNI, "redis", redis.addr());
            routes.push(route.allow(&[&allow]).login(Some(USER), &secret.path()));
        }
        let gw = Gateway::start_with(&pki, &routes, opts);
        if pg.is_some() {
            tunnels.push(Tunnel::new("postgres", "postgres", gw.addr, PG_SNI));
        }
        if redis.is_some() {
            tunnels.push(Tunnel::new("redis", "redis", gw.addr, REDIS_SNI));
        }
        let sc = Sidecar::start(&pki, &tunnels);
        Chain {
            gw,
            sc,
            pki,
            secret,
        }
    }

    /// libpq conninfo through the sidecar as some user that is not the role, no password.
    pub fn pg_conninfo(&self, db: &str) -> String {
        let port = self.sc.port("postgres");
        format!("host=127.0.0.1 port={port} user=whoever dbname={db} connect_timeout=20")
    }

    /// libpq conninfo straight to the gateway, with the worker's certificate.
    pub fn pg_direct(&self, extra: &str) -> String {
        format!(
            "host={PG_SNI} hostaddr=127.0.0.1 port={} sslmode=verify-full sslrootcert={} \
             sslcert={} sslkey={} user=whoever dbname={USER} connect_timeout=20 {extra}",
            self.gw.port(),
            self.pki.ca().display(),
            self.pki.client_cert().display(),
            self.pki.client_key().display(),
        )
    }
}

/// `psql -XAt -c sql` with `conninfo`; (success, stdout, stderr). A password in the
/// environment must not matter: the client is never asked for one.
pub fn psql(conninfo: &str, sql: &str) -> (bool, String, String) {
    let mut cmd = Command::new("psql");
    cmd.arg(conninfo)
        .args(["-XAtqv", "ON_ERROR_STOP=1", "-c", sql]);
    cmd.env("PGPASSWORD", "a-client-password")
        .env_remove("PGSSLMODE");
    let out = run(&mut cmd, CMD);
    let (o, e) = texts(&out);
    (out.status.success(), o, e)
}

/// Runs `code` with the venv's Python (psycopg 3 with libpq ≥ 17, redis-py); its stdout.
pub fn run_python(venv_python: &Path, code: &str, env: &[(&str, String)]) -> String {
    let mut cmd = Command::new(venv_python);
    cmd.arg("-c").arg(code);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd, CMD);
    let (o, e) = texts(&out);
    assert!(
        out.status.success(),
        "python failed:\n{code}\nstdout:\n{o}\nstderr:\n{e}"
    );
    o
}

/// The venv with Celery, SQLAlchemy and psycopg2.
pub fn topology_python() -> PathBuf {
    repo_root().join(".venv-topology/bin/python")
}

/// A venv with redis-py 5 (RESP2 unless asked; `AUTH` rather than `HELLO 3 AUTH`).
pub fn redis5_python() -> PathBuf {
    repo_root().join(".venv-redis5/bin/python")
}
