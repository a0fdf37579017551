//! A guarded gateway: real backends whose connection counters every refusal must leave
//! unchanged, and a good client that must still get through afterwards.

use std::net::SocketAddr;
use std::process::Command;

use super::{expect_refusal, refused_lines, GwConf, RouteConf};
use crate::support::pki::{p, Pki};

/// Redis (and optionally PostgreSQL) behind a gateway; the counters are what the backends
/// have seen so far, updated only by the good clients.
pub struct Guarded {
    pub redis: crate::support::RedisServer,
    pub pg: Option<crate::support::Postgres>,
    pub pki: Pki,
    pub gw: crate::support::Gateway,
    pub redis_conns: u64,
    pub pg_conns: usize,
}

/// The standard routes: `redis` and (with a server) `postgres`, both allowing the default
/// client identity.
pub fn standard_routes(
    redis: &crate::support::RedisServer,
    pg: Option<&crate::support::Postgres>,
) -> Vec<RouteConf> {
    use crate::support::pki::{CLIENT_NAME, PG_SNI, REDIS_SNI};
    let ok = format!("dns:{CLIENT_NAME}");
    let mut routes = vec![RouteConf::new("redis", REDIS_SNI, "redis", redis.addr()).allow(&[&ok])];
    if let Some(pg) = pg {
        let backend = format!("127.0.0.1:{}", pg.port);
        routes.push(RouteConf::new("postgres", PG_SNI, "postgres", backend).allow(&[&ok]));
    }
    routes
}

impl Guarded {
    /// Standard routes, mutual TLS; `tweak` may change the config before the start.
    pub fn start(with_pg: bool, tweak: impl FnOnce(&mut GwConf)) -> Guarded {
        Self::with_pki(Pki::new(), with_pg, tweak)
    }

    /// Like `start`, with a Pki made beforehand (e.g. to write a CRL from its CA first).
    pub fn with_pki(pki: Pki, with_pg: bool, tweak: impl FnOnce(&mut GwConf)) -> Guarded {
        let redis = crate::support::RedisServer::start();
        let pg = with_pg.then(crate::support::Postgres::start);
        let mut conf = GwConf::new(&pki, standard_routes(&redis, pg.as_ref()));
        tweak(&mut conf);
        let gw = crate::support::Gateway::from_yaml(&conf.yaml());
        let redis_conns = redis.total_connections();
        let pg_conns = pg.as_ref().map_or(0, |pg| pg.connections_received());
        Guarded {
            redis,
            pg,
            pki,
            gw,
            redis_conns,
            pg_conns,
        }
    }

    /// How many `refused` lines the gateway has logged so far.
    pub fn refused(&self) -> usize {
        refused_lines(&self.gw.proc).len()
    }

    /// One new `refused` line with `reason` (returned), no backend connection, and good
    /// clients still served.
    pub async fn assert_refused(&mut self, before: usize, reason: &str) -> String {
        let line = expect_refusal(&self.gw.proc, before, reason);
        self.assert_no_backend_connection();
        self.good_clients_work().await;
        line
    }

    pub fn assert_no_backend_connection(&self) {
        assert_eq!(
            self.redis.total_connections(),
            self.redis_conns,
            "a redis backend connection was opened"
        );
        if let Some(pg) = &self.pg {
            assert_eq!(
                pg.connections_received(),
                self.pg_conns,
                "a PostgreSQL backend connection was opened:\n{}",
                pg.log()
            );
        }
    }

    /// A good Redis client (and psql, with PostgreSQL) gets through, opening exactly one
    /// backend connection each, and is not refused.
    pub async fn good_clients_work(&mut self) {
        use crate::support::pki::REDIS_SNI;
        use crate::support::tls::{resp_line, ClientOpts};
        let refused = self.refused();
        let mut good = ClientOpts::new(&self.pki)
            .connect(self.gw.addr, REDIS_SNI)
            .await
            .expect("good client's handshake");
        assert_eq!(resp_line(&mut good, &["PING"]).await, "+PONG\r\n");
        drop(good);
        self.redis_conns += 1;
        assert_eq!(self.redis.total_connections(), self.redis_conns);
        if let Some(out) = self
            .pg
            .is_some()
            .then(|| self.psql(crate::support::pki::PG_SNI, &self.pki))
        {
            assert_eq!(
                crate::support::texts(&out).0,
                "1\n",
                "{:?}",
                crate::support::texts(&out)
            );
            self.pg_conns += 1;
        }
        if let Some(pg) = &self.pg {
            assert_eq!(pg.connections_received(), self.pg_conns);
        }
        assert_eq!(self.refused(), refused, "{}", self.gw.proc.log());
    }

    /// psql straight to the gateway: verify-full for `sni`, `client`'s certificate, `select 1`.
    pub fn psql(&self, sni: &str, client: &Pki) -> std::process::Output {
        let conninfo = format!(
            "host={sni} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
             sslmode=verify-full sslrootcert={} sslcert={} sslkey={} connect_timeout=20",
            self.gw.port(),
            p(&client.ca()),
            p(&client.client_cert()),
            p(&client.client_key())
        );
        crate::support::run(
            Command::new("psql")
                .arg(conninfo)
                .args(["-XAtc", "select 1"]),
            crate::support::CMD,
        )
    }
}

/// `openssl s_client` to `addr` with SNI `sni` exactly as given (OpenSSL sends any string),
/// `pki`'s CA and client certificate, extra `args`; sends `input` and returns
/// (success, stdout, stderr).
pub fn s_client(
    addr: SocketAddr,
    sni: &str,
    pki: &Pki,
    args: &[&str],
    input: &[u8],
) -> (bool, String, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-ign_eof", "-connect", &addr.to_string()]);
    if !sni.is_empty() {
        cmd.args(["-servername", sni]);
    }
    cmd.args(["-CAfile", &p(&pki.ca())]);
    cmd.args([
        "-cert",
        &p(&pki.client_cert()),
        "-key",
        &p(&pki.client_key()),
    ]);
    cmd.args(args);
    let out = crate::support::run_with_input(&mut cmd, Some(input), crate::support::CMD);
    let (o, e) = crate::support::texts(&out);
    (out.status.success(), o, e)
}
