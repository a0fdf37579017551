//! One long reload story under two traffic streams: each step changes something while both
//! streams keep making checked round trips, and at the end every byte is accounted for.

use std::io;
use std::net::SocketAddr;

use rustls::AlertDescription::UnrecognisedName;
use snigate::config::{GatewayConfig, SidecarConfig};
use tokio::net::TcpStream;

use super::{assert_serves, direct, relayed};
use crate::support::clients::resp::{Reply, Resp, Traffic};
use crate::support::clients::tls::alert;
use crate::support::config::{host_port, ms};
use crate::support::secret::{gateway_files, sidecar_files, Opens, Secret};
use crate::support::*;

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

/// Two Redis servers told apart by the value of `marker`; a gateway and a sidecar whose
/// certificates live in Secrets; bytes of extra connections through the sidecar's `redis`.
struct World {
    pki2: Pki,
    redis_a: RedisServer,
    redis_b: RedisServer,
    gw_secret: Secret,
    sc_secret: Secret,
    gw: Gateway,
    sc: Sidecar,
    gw_config: GatewayConfig,
    sc_config: SidecarConfig,
    extra: (u64, u64),
}

impl World {
    fn start(pki1: &Pki) -> World {
        let (redis_a, redis_b) = (RedisServer::start(), RedisServer::start());
        for (r, v) in [(&redis_a, "a"), (&redis_b, "b")] {
            redis::cmd("SET")
                .arg("marker")
                .arg(v)
                .exec(&mut r.direct())
                .unwrap();
        }
        let gw_secret = Secret::new(&gateway_files(pki1));
        let sc_secret = Secret::new(&sidecar_files(pki1));
        let mut gw_config = gateway(
            pki1,
            vec![
                route("redis", REDIS_SNI, Protocol::Redis, redis_a.addr()),
                route("old", TCP_SNI, Protocol::Redis, redis_a.addr()),
                route("moving", LOCKED_SNI, Protocol::Redis, redis_a.addr()),
            ],
        );
        gw_config.tls.cert = gw_secret.path("server.crt");
        gw_config.tls.key = gw_secret.path("server.key");
        gw_config.tls.client_ca = Some(gw_secret.path("ca.crt"));
        gw_config.timeouts.watch_interval = ms(100);
        let gw = Gateway::start(&gw_config);
        let mut sc_config = sidecar(
            pki1,
            vec![
                tunnel("redis", Protocol::Redis, gw.addr, REDIS_SNI),
                tunnel("old", Protocol::Redis, gw.addr, TCP_SNI),
            ],
        );
        sc_config.tls.ca = sc_secret.path("ca.crt");
        sc_config.tls.cert = Some(sc_secret.path("client.crt"));
        sc_config.tls.key = Some(sc_secret.path("client.key"));
        sc_config.timeouts.watch_interval = ms(100);
        let sc = Sidecar::start(&sc_config);
        World {
            pki2: Pki::new(),
            redis_a,
            redis_b,
            gw_secret,
            sc_secret,
            gw,
            sc,
            gw_config,
            sc_config,
            extra: (0, 0),
        }
    }

    async fn get_marker(&self, sni: &str) -> Reply {
        let (mut c, _) = direct(&self.pki2, self.gw.addr, sni).await.unwrap();
        let reply = c.cmd(&[b"GET", b"marker"]).await.unwrap();
        c.close().await.unwrap();
        reply
    }

    /// One command through the sidecar's `redis` tunnel; its bytes are counted as extra.
    async fn through_sidecar(&mut self, args: &[&[u8]]) -> Reply {
        let mut c = Resp::connect(self.sc.addr("redis")).await.unwrap();
        let reply = c.cmd(args).await.unwrap();
        self.extra = (self.extra.0 + c.sent, self.extra.1 + c.received);
        c.close().await.unwrap();
        reply
    }

    /// (a) The gateway's Secret is updated to a new CA, server cert and key; (b) the sidecar
    /// fails its handshakes until its own Secret is updated too.
    async fn rotate_certificates(&mut self, pki1: &Pki) {
        self.gw_secret.update(&gateway_files(&self.pki2));
        self.gw.wait_reloads("certificates", "success", 1.0);
        self.gw.wait_lines("reloaded; new connections use it", 1);
        assert_serves(&self.pki2, self.gw.addr, REDIS_SNI).await;
        let old_ca = direct(pki1, self.gw.addr, REDIS_SNI).await;
        assert!(old_ca.is_err(), "a client of the replaced CA still got in");
        let mut c = Resp::connect(self.sc.addr("redis")).await.unwrap();
        match c.cmd(&[b"PING"]).await.unwrap() {
            Reply::Error(e) => assert!(e.contains("TLS handshake with gateway"), "{e}"),
            other => panic!("expected a TLS failure, got {other:?}"),
        }
        self.sc_secret.update(&sidecar_files(&self.pki2));
        self.sc.wait_reloads("certificates", "success", 1.0);
        let pong = self.through_sidecar(&[b"PING"]).await;
        assert_eq!(pong, Reply::Status("PONG".into()));
    }

    /// (c) SIGHUP: route `old` removed, `added` added, `moving` moved to another backend.
    async fn change_routes(&mut self) {
        let routes = &mut self.gw_config.routes;
        routes.retain(|r| r.name != "old");
        routes[1].backend = host_port(self.redis_b.addr());
        routes.push(route("added", PG_SNI, Protocol::Redis, self.redis_a.addr()));
        self.gw.write_config(&self.gw_config);
        self.gw.signal(libc::SIGHUP);
        self.gw.wait_reloads("config", "success", 1.0);
        assert_serves(&self.pki2, self.gw.addr, PG_SNI).await;
        let removed = direct(&self.pki2, self.gw.addr, TCP_SNI).await;
        assert_eq!(
            alert(&removed.err().expect("removed route")),
            Some(UnrecognisedName)
        );
        self.gw.wait_line("the removed route's refusal", |l| {
            l.is("refused") && l.has("reason", "unknown_sni")
        });
        assert_eq!(self.get_marker(LOCKED_SNI).await, bulk("b"));
    }

    /// (d) SIGHUP on the sidecar: tunnel `old` removed, `added` added, `redis` changed to the
    /// name of route `moving` (same listening socket).
    async fn change_tunnels(&mut self, t2_addr: SocketAddr) {
        let gw = self.gw.addr;
        self.sc_config.tunnels = vec![
            tunnel("redis", Protocol::Redis, gw, LOCKED_SNI),
            tunnel("added", Protocol::Redis, gw, PG_SNI),
        ];
        self.sc.write_config(&self.sc_config);
        self.sc.signal(libc::SIGHUP);
        self.sc.wait_reloads("config", "success", 1.0);
        let added = self.sc.wait_line("tunnel added", |l| {
            l.is("listening") && l.has("tunnel", "added")
        });
        let added: SocketAddr = added.field("addr").unwrap().parse().unwrap();
        let mut c = Resp::connect(added).await.unwrap();
        c.ping().await;
        c.close().await.unwrap();
        let err = TcpStream::connect(t2_addr).await.err().map(|e| e.kind());
        assert_eq!(
            err,
            Some(io::ErrorKind::ConnectionRefused),
            "removed tunnel accepts"
        );
        assert_eq!(self.through_sidecar(&[b"GET", b"marker"]).await, bulk("b"));
    }

    /// (e) Broken configs: refused, logged, counted; the running version keeps serving.
    async fn refuse_broken_configs(&self) {
        for proc in [&self.gw.proc, &self.sc.proc] {
            proc.write_config_text("routes: [\n");
            proc.signal(libc::SIGHUP);
            proc.wait_reloads("config", "failure", 1.0);
            proc.wait_lines("reload refused; the running version stays", 1);
            assert_eq!(proc.reloads("config", "success"), 1.0);
        }
        assert_serves(&self.pki2, self.gw.addr, REDIS_SNI).await;
        assert_serves(&self.pki2, self.gw.addr, PG_SNI).await;
    }

    /// (f) A broken certificate arrives in a Secret update: refused once, not once per watch
    /// round, while the previous certificate keeps being served.
    async fn refuse_a_broken_certificate_once(&mut self) {
        let mut broken = gateway_files(&self.pki2);
        broken[0].1 =
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".to_vec();
        self.gw_secret.update(&broken);
        self.gw.wait_reloads("certificates", "failure", 1.0);
        // Three more watch rounds read the same broken file: still counted once.
        let mut rounds = Opens::of(&self.gw_secret.path("server.crt"));
        rounds.wait(3);
        assert_serves(&self.pki2, self.gw.addr, REDIS_SNI).await;
        assert_eq!(self.gw.reloads("certificates", "failure"), 1.0);
        assert_eq!(self.gw.reloads("certificates", "success"), 1.0);
        let refused = self.gw.lines("reload refused; the running version stays");
        assert_eq!(refused.len(), 2, "{}", self.gw.log_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_traffic_keep_every_byte() {
    let pki1 = Pki::new();
    let mut w = World::start(&pki1);
    let (t1_addr, t2_addr) = (w.sc.addr("redis"), w.sc.addr("old"));
    let (mut c, _) = direct(&pki1, w.gw.addr, LOCKED_SNI).await.unwrap();
    assert_eq!(c.cmd(&[b"GET", b"marker"]).await.unwrap(), bulk("a"));
    c.close().await.unwrap();

    // Two long streams: t1 on a route that stays, t2 on a route and tunnel that go away.
    let t1 = Traffic::start(t1_addr, "t1").await;
    let t2 = Traffic::start(t2_addr, "t2").await;
    let progress = || {
        t1.wait_progress(5);
        t2.wait_progress(5);
    };
    progress();
    w.rotate_certificates(&pki1).await;
    progress();
    w.change_routes().await;
    progress();
    w.change_tunnels(t2_addr).await;
    progress();
    w.refuse_broken_configs().await;
    progress();
    w.refuse_a_broken_certificate_once().await;
    progress();

    // Every value came back as written, and the byte counts match on both hops.
    let (r1, r2) = (t1.finish().await, t2.finish().await);
    for r in [&r1, &r2] {
        assert_eq!(r.sha_set, r.sha_got, "checksums");
        assert!(r.ops >= 30, "{r:?}");
    }
    let old = (r2.sent as f64, r2.received as f64);
    assert_eq!(relayed(&w.gw, "old", 1.0), old, "gateway, removed route");
    assert_eq!(relayed(&w.sc, "old", 1.0), old, "sidecar, removed tunnel");
    let t1_bytes = (
        (r1.sent + w.extra.0) as f64,
        (r1.received + w.extra.1) as f64,
    );
    assert_eq!(
        relayed(&w.sc, "redis", 3.0),
        t1_bytes,
        "sidecar, redis tunnel"
    );
    println!(
        "t1: {} round trips, {} bytes sent; t2: {} round trips, {} bytes sent",
        r1.ops, r1.sent, r2.ops, r2.sent
    );
}
