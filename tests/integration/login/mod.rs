//! The gateway logs in to the backend for its clients (`login:`): backends that require
//! passwords, and a sidecar chain whose clients hold none. `postgres`, `redis` and `celery`
//! are the clients' side, `ops` running such a route.

mod celery;
mod ops;
mod postgres;
mod redis;

use std::process::Command;

use snigate::config::{GatewayConfig, LoginConfig};

use crate::support::config::ms;
use crate::support::fixtures::standard_routes;
use crate::support::secret::{Files, Secret};
use crate::support::*;

/// The role / ACL user the gateway logs in as.
const USER: &str = "celery";
/// Its password, held by the gateway only.
const PASSWORD: &str = "Gw-Login-Pw-5e1d0c93";
/// The Redis `requirepass` of the default user, which nobody should need.
const DEFAULT_PASSWORD: &str = "Default-Pw-77ab21f0";

/// The contents of a Secret holding the password file `password`.
fn password(text: &str) -> Files {
    vec![("password", format!("{text}\n").into_bytes())]
}

/// PostgreSQL whose TCP clients must authenticate with `method` (`scram-sha-256`, `md5`,
/// `password` or `trust`); role `celery` owns database `celery`. The test itself uses the
/// Unix socket, trusted for `postgres` only.
fn postgres(method: &str) -> Postgres {
    let pg = Postgres::start();
    let encryption = if method == "md5" {
        "md5"
    } else {
        "scram-sha-256"
    };
    let role = format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'");
    pg.psql(&format!("SET password_encryption = '{encryption}'; {role}"));
    pg.psql(&format!("CREATE DATABASE {USER} OWNER {USER}"));
    let hba = format!("local all postgres trust\nhost all all 127.0.0.1/32 {method}\n");
    std::fs::write(pg.dir.path().join("data/pg_hba.conf"), hba).unwrap();
    assert_eq!(pg.psql("select pg_reload_conf()"), "t");
    pg
}

/// redis-server with `requirepass` for `default` and the ACL user `celery` with the channels
/// Celery needs (`&*`: Redis 7's `acl-pubsub-default resetchannels` grants none otherwise).
fn redis_with_users() -> RedisServer {
    let redis = RedisServer::start();
    let mut admin = redis.direct();
    let user = [
        "SETUSER",
        USER,
        "on",
        &format!(">{PASSWORD}"),
        "~*",
        "&*",
        "+@all",
    ];
    let _: () = ::redis::cmd("ACL")
        .arg(&user[..])
        .query(&mut admin)
        .unwrap();
    let pass = ["SET", "requirepass", DEFAULT_PASSWORD];
    let _: () = ::redis::cmd("CONFIG")
        .arg(&pass[..])
        .query(&mut admin)
        .unwrap();
    redis
}

/// A direct client of `redis` as the default user (for checks the test makes itself).
fn redis_admin(redis: &RedisServer) -> ::redis::Connection {
    let url = format!("redis://:{DEFAULT_PASSWORD}@{}/", redis.addr());
    ::redis::Client::open(url)
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Gateway (mTLS, allow the worker) with login routes `postgres` and/or `redis`, and a sidecar
/// with a tunnel for each; the gateway's password file is in `secret`.
struct Chain {
    gw: Gateway,
    sc: Sidecar,
    pki: Pki,
    secret: Secret,
}

impl Chain {
    fn start(pg: Option<&Postgres>, redis: Option<&RedisServer>) -> Chain {
        Chain::with(pg, redis, PASSWORD, |_| {})
    }

    /// Like `start`, with `password` in the password file and `tweak` applied to the
    /// gateway's config.
    fn with(
        pg: Option<&Postgres>,
        redis: Option<&RedisServer>,
        password_text: &str,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Chain {
        Chain::launched(&Launch::default(), pg, redis, password_text, tweak)
    }

    /// Like `with`, both processes run as `launch` says.
    fn launched(
        launch: &Launch,
        pg: Option<&Postgres>,
        redis: Option<&RedisServer>,
        password_text: &str,
        tweak: impl FnOnce(&mut GatewayConfig),
    ) -> Chain {
        let pki = Pki::new();
        let secret = Secret::new(&password(password_text));
        let login = LoginConfig {
            user: Some(USER.into()),
            password_file: secret.path("password"),
        };
        let mut routes = standard_routes(redis, pg);
        routes
            .iter_mut()
            .for_each(|r| r.login = Some(login.clone()));
        let mut config = gateway(&pki, routes);
        config.timeouts.watch_interval = ms(100);
        tweak(&mut config);
        let gw = launch.gateway(&config);
        let tunnels = config
            .routes
            .iter()
            .map(|r| tunnel(&r.name, r.protocol, gw.addr, &r.server_names[0]));
        let sc = launch.sidecar(&sidecar(&pki, tunnels.collect()));
        Chain {
            gw,
            sc,
            pki,
            secret,
        }
    }

    /// libpq conninfo through the sidecar as some user that is not the role, no password.
    fn pg_conninfo(&self, db: &str) -> String {
        let port = self.sc.port("postgres");
        format!("host=127.0.0.1 port={port} user=whoever dbname={db} connect_timeout=20")
    }

    /// libpq conninfo straight to the gateway, with the worker's certificate.
    fn pg_direct(&self) -> String {
        format!(
            "host={PG_SNI} hostaddr=127.0.0.1 port={} sslmode=verify-full sslrootcert={} \
             sslcert={} sslkey={} user=whoever dbname={USER} connect_timeout=20",
            self.gw.port(),
            self.pki.ca().display(),
            self.pki.client_cert().display(),
            self.pki.client_key().display(),
        )
    }
}

/// `psql -XAt -c sql` with `conninfo`; (success, stdout, stderr). A password in the
/// environment must not matter: the client is never asked for one.
fn psql_without_password(conninfo: &str, sql: &str) -> (bool, String, String) {
    let mut cmd = Command::new("psql");
    cmd.arg(conninfo)
        .args(["-XAtqv", "ON_ERROR_STOP=1", "-c", sql]);
    cmd.env("PGPASSWORD", "a-client-password")
        .env_remove("PGSSLMODE");
    let out = run(&mut cmd, CMD);
    let (o, e) = texts(&out);
    (out.status.success(), o, e)
}
