//! Hot reload while connections carry traffic: certificates swapped the way Kubernetes
//! updates a mounted Secret (`..data` symlink swap), SIGHUP with routes and tunnels added,
//! removed and changed, and broken certificates and configs refused (counted once) while
//! the running version keeps serving. Every byte in flight must arrive.

mod support;

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use support::pki::{LOCKED_SNI, PG_SNI, REDIS_SNI, TCP_SNI};
use support::resp::{Reply, Resp, Traffic};
use support::snigate::{
    field, gateway_yaml_with, sidecar_yaml_files, ClientFiles, Proc, ServerFiles,
};
use support::tls::{alert, ClientOpts};
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Longer than two file-watch intervals (2 s each) plus scheduling slack.
const RELOAD: Duration = Duration::from_secs(10);

/// A directory laid out like a mounted Kubernetes Secret: `name -> ..data/name`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped directory, swaps `..data`
/// with one atomic rename, then deletes the old directory (what the kubelet does).
struct Secret {
    dir: tempfile::TempDir,
    version: usize,
}

impl Secret {
    fn new(files: &[(&str, Vec<u8>)]) -> Secret {
        let dir = tempfile::Builder::new()
            .prefix("snigate-secret-")
            .tempdir()
            .unwrap();
        let mut s = Secret { dir, version: 0 };
        s.update(files);
        for (name, _) in files {
            symlink(Path::new("..data").join(name), s.path(name)).unwrap();
        }
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        let old = format!("..2026_11_23_13_00_0{}.000000001", self.version);
        self.version += 1;
        let new = format!("..2026_11_23_13_00_0{}.000000001", self.version);
        fs::create_dir(self.path(&new)).unwrap();
        for (name, bytes) in files {
            fs::write(self.path(&new).join(name), bytes).unwrap();
        }
        symlink(&new, self.path("..data_tmp")).unwrap();
        fs::rename(self.path("..data_tmp"), self.path("..data")).unwrap();
        if self.version > 1 {
            fs::remove_dir_all(self.path(&old)).unwrap();
        }
    }
}

fn read(path: PathBuf) -> Vec<u8> {
    fs::read(path).unwrap()
}

fn gateway_secret(pki: &Pki) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("server.crt", read(pki.server_cert())),
        ("server.key", read(pki.server_key())),
        ("ca.crt", read(pki.ca())),
    ]
}

fn sidecar_secret(pki: &Pki) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("ca.crt", read(pki.ca())),
        ("client.crt", read(pki.client_cert())),
        ("client.key", read(pki.client_key())),
    ]
}

fn leaf(path: &Path) -> Vec<u8> {
    let first = CertificateDer::pem_file_iter(path).unwrap().next().unwrap();
    first.unwrap().to_vec()
}

fn reloads(proc: &Proc, what: &str, result: &str) -> f64 {
    let labels = [("what", what), ("result", result)];
    proc.metrics().count("snigate_reloads_total", &labels)
}

fn wait_reloads(proc: &Proc, what: &str, result: &str, n: f64) {
    let found = poll(RELOAD, || (reloads(proc, what, result) >= n).then_some(()));
    assert!(
        found.is_some(),
        "no {what} reload {result} #{n} within {RELOAD:?}; /metrics:\n{}\nlog:\n{}",
        proc.metrics().text,
        proc.log()
    );
    assert_eq!(reloads(proc, what, result), n, "{what} {result}");
}

/// A new direct TLS client (with `pki`'s client certificate) of route `sni`; returns the
/// connection and the leaf certificate the gateway served.
async fn direct(
    pki: &Pki,
    gw: SocketAddr,
    sni: &str,
) -> io::Result<(Resp<TlsStream<TcpStream>>, Vec<u8>)> {
    let tls = ClientOpts::new(pki).connect(gw, sni).await?;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((Resp::new(tls), served))
}

/// A new connection on route `sni` answers PING with PONG, served with `pki`'s certificate.
async fn assert_serves(pki: &Pki, gw: SocketAddr, sni: &str) {
    let (mut c, served) = direct(pki, gw, sni)
        .await
        .unwrap_or_else(|e| panic!("new connection to {sni}: {e}"));
    assert_eq!(served, leaf(&pki.server_cert()), "served certificate");
    let pong = c.cmd(&[b"PING"]).await.unwrap();
    assert_eq!(pong, Reply::Status("PONG".into()), "{sni}");
    c.close().await.unwrap();
}

async fn get_marker(pki: &Pki, gw: SocketAddr, sni: &str) -> Reply {
    let (mut c, _) = direct(pki, gw, sni).await.unwrap();
    let reply = c.cmd(&[b"GET", b"marker"]).await.unwrap();
    c.close().await.unwrap();
    reply
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

/// Relayed bytes of `route` in one direction, once `n` connections have ended on it.
fn relayed(proc: &Proc, route: &str, n: f64) -> (f64, f64) {
    let done = poll(RELOAD, || {
        let m = proc.metrics();
        let count = m.count(
            "snigate_connection_duration_seconds_count",
            &[("route", route)],
        );
        (count >= n).then_some(m)
    });
    let m = done.unwrap_or_else(|| panic!("{n} connections on {route} never ended"));
    let dir = |d| m.get("snigate_bytes_total", &[("route", route), ("direction", d)]);
    (dir("from_client"), dir("to_client"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_traffic_keep_every_byte() {
    let (pki1, pki2) = (Pki::new(), Pki::new());
    let (redis_a, redis_b) = (RedisServer::start(), RedisServer::start());
    for (r, v) in [(&redis_a, "a"), (&redis_b, "b")] {
        redis::cmd("SET")
            .arg("marker")
            .arg(v)
            .exec(&mut r.direct())
            .unwrap();
    }
    let mut gw_secret = Secret::new(&gateway_secret(&pki1));
    let mut sc_secret = Secret::new(&sidecar_secret(&pki1));
    let gw_files = ServerFiles {
        cert: gw_secret.path("server.crt"),
        key: gw_secret.path("server.key"),
        client_ca: Some(gw_secret.path("ca.crt")),
        crl: None,
    };
    let sc_files = ClientFiles {
        ca: sc_secret.path("ca.crt"),
        cert: Some((sc_secret.path("client.crt"), sc_secret.path("client.key"))),
    };
    let opts = Opts::new().admin();
    let gw_yaml = |routes: &[Route]| gateway_yaml_with("127.0.0.1:0", &gw_files, routes, &opts);
    let routes = [
        Route::new("redis", REDIS_SNI, "redis", redis_a.addr()),
        Route::new("old", TCP_SNI, "redis", redis_a.addr()),
        Route::new("moving", LOCKED_SNI, "redis", redis_a.addr()),
    ];
    let gw = Gateway::from_yaml_with(&gw_yaml(&routes), &opts);
    let sc_opts = Opts::new().admin().timeout("probe_interval", "0s");
    let sc_yaml = |tunnels: &[Tunnel]| sidecar_yaml_files(&sc_files, tunnels, &sc_opts);
    let tunnels = [
        Tunnel::new("redis", "redis", gw.addr, REDIS_SNI),
        Tunnel::new("old", "redis", gw.addr, TCP_SNI),
    ];
    let sc = Sidecar::from_yaml_with(&sc_yaml(&tunnels), 2, &sc_opts);
    let (t1_addr, t2_addr) = (loopback(sc.port("redis")), loopback(sc.port("old")));
    assert_eq!(get_marker(&pki1, gw.addr, LOCKED_SNI).await, bulk("a"));

    // Two long streams: t1 on a route that stays, t2 on a route and tunnel that go away.
    let t1 = Traffic::start(t1_addr, "t1").await;
    let t2 = Traffic::start(t2_addr, "t2").await;
    let progress = || {
        t1.wait_progress(5);
        t2.wait_progress(5);
    };
    progress();
    // Bytes of extra relayed connections through the sidecar's redis tunnel.
    let (mut extra_sent, mut extra_received) = (0, 0);

    // (a) The gateway's Secret is updated to a new CA, server cert and key.
    gw_secret.update(&gateway_secret(&pki2));
    wait_reloads(&gw.proc, "certificates", "success", 1.0);
    gw.proc.wait_lines(&["reloaded"], 1);
    progress();
    assert_serves(&pki2, gw.addr, REDIS_SNI).await;
    let old_ca = direct(&pki1, gw.addr, REDIS_SNI).await;
    assert!(old_ca.is_err(), "a client of the replaced CA still got in");
    // The sidecar still trusts the old CA: its new connections fail the handshake...
    let mut c = Resp::connect(t1_addr).await.unwrap();
    match c.cmd(&[b"PING"]).await.unwrap() {
        Reply::Error(e) => assert!(e.contains("TLS handshake with gateway"), "{e}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    // (b) ...until its own Secret is updated too.
    sc_secret.update(&sidecar_secret(&pki2));
    wait_reloads(&sc.proc, "certificates", "success", 1.0);
    progress();
    let mut c = Resp::connect(t1_addr).await.unwrap();
    assert_eq!(
        c.cmd(&[b"PING"]).await.unwrap(),
        Reply::Status("PONG".into())
    );
    (extra_sent, extra_received) = (extra_sent + c.sent, extra_received + c.received);
    c.close().await.unwrap();

    // (c) SIGHUP: route `old` removed, `added` added, `moving` moved to another backend.
    let routes = [
        Route::new("redis", REDIS_SNI, "redis", redis_a.addr()),
        Route::new("moving", LOCKED_SNI, "redis", redis_b.addr()),
        Route::new("added", PG_SNI, "redis", redis_a.addr()),
    ];
    gw.proc.write_config(&gw_yaml(&routes));
    gw.proc.signal(libc::SIGHUP);
    wait_reloads(&gw.proc, "config", "success", 1.0);
    assert_serves(&pki2, gw.addr, PG_SNI).await;
    let removed = direct(&pki2, gw.addr, TCP_SNI)
        .await
        .err()
        .expect("removed route");
    assert_eq!(
        alert(&removed),
        Some(rustls::AlertDescription::UnrecognisedName)
    );
    gw.proc.wait_lines(&["refused", "reason=unknown_sni"], 1);
    assert_eq!(get_marker(&pki2, gw.addr, LOCKED_SNI).await, bulk("b"));
    progress();

    // (d) SIGHUP on the sidecar: tunnel `old` removed, `added` added, `redis` changed to
    // the name of route `moving` (same listening socket).
    let tunnels = [
        Tunnel::new("redis", "redis", gw.addr, LOCKED_SNI),
        Tunnel::new("added", "redis", gw.addr, PG_SNI),
    ];
    sc.proc.write_config(&sc_yaml(&tunnels));
    sc.proc.signal(libc::SIGHUP);
    wait_reloads(&sc.proc, "config", "success", 1.0);
    sc.proc.wait_lines(&["listening", "tunnel=added"], 1);
    let line = sc.proc.lines_with(&["listening", "tunnel=added"]).remove(0);
    let added: SocketAddr = field(&line, "addr").unwrap().parse().unwrap();
    let mut c = Resp::connect(added).await.unwrap();
    assert_eq!(
        c.cmd(&[b"PING"]).await.unwrap(),
        Reply::Status("PONG".into())
    );
    c.close().await.unwrap();
    let err = TcpStream::connect(t2_addr).await.err();
    assert_eq!(
        err.map(|e| e.kind()),
        Some(io::ErrorKind::ConnectionRefused),
        "removed tunnel still accepts"
    );
    let mut c = Resp::connect(t1_addr).await.unwrap();
    assert_eq!(c.cmd(&[b"GET", b"marker"]).await.unwrap(), bulk("b"));
    (extra_sent, extra_received) = (extra_sent + c.sent, extra_received + c.received);
    c.close().await.unwrap();
    progress();

    // (e) Broken configs: refused, logged, counted; the running version keeps serving.
    for proc in [&gw.proc, &sc.proc] {
        proc.write_config("routes: [\n");
        proc.signal(libc::SIGHUP);
        wait_reloads(proc, "config", "failure", 1.0);
        proc.wait_lines(&["reload refused"], 1);
        assert_eq!(reloads(proc, "config", "success"), 1.0);
    }
    assert_serves(&pki2, gw.addr, REDIS_SNI).await;
    assert_serves(&pki2, gw.addr, PG_SNI).await;
    progress();

    // (f) A broken certificate arrives in a Secret update: refused once, old one served.
    let mut broken = gateway_secret(&pki2);
    broken[0].1 =
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".to_vec();
    gw_secret.update(&broken);
    wait_reloads(&gw.proc, "certificates", "failure", 1.0);
    // Counted once, not once per watch interval: watch for more than two intervals while
    // new connections keep being served with the previous certificate.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_serves(&pki2, gw.addr, REDIS_SNI).await;
        assert_eq!(reloads(&gw.proc, "certificates", "failure"), 1.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reloads(&gw.proc, "certificates", "success"), 1.0);
    assert_eq!(
        gw.proc.count_lines(&["reload refused"]),
        2,
        "{}",
        gw.proc.log()
    );
    progress();

    // Every value came back as written, and the byte counts match on both hops.
    let (r1, r2) = (t1.finish().await, t2.finish().await);
    for r in [&r1, &r2] {
        assert_eq!(r.sha_set, r.sha_got, "checksums");
        assert!(r.ops >= 30, "{r:?}");
    }
    let old = (r2.sent as f64, r2.received as f64);
    assert_eq!(relayed(&gw.proc, "old", 1.0), old, "gateway, removed route");
    assert_eq!(
        relayed(&sc.proc, "old", 1.0),
        old,
        "sidecar, removed tunnel"
    );
    let t1_bytes = (
        (r1.sent + extra_sent) as f64,
        (r1.received + extra_received) as f64,
    );
    assert_eq!(
        relayed(&sc.proc, "redis", 3.0),
        t1_bytes,
        "sidecar, redis tunnel"
    );
    println!(
        "t1: {} round trips, {} bytes sent; t2: {} round trips, {} bytes sent",
        r1.ops, r1.sent, r2.ops, r2.sent
    );
}

/// `pki`'s development CA as an rcgen issuer: same subject, same key (as `snigate certs`).
fn ca_params(pki: &Pki) -> (rcgen::CertificateParams, rcgen::KeyPair) {
    let key =
        rcgen::KeyPair::from_pem(&fs::read_to_string(pki.path().join("ca.key")).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "snigate development CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    (params, key)
}

/// Another client certificate issued by `pki`'s CA, in a directory shaped like a Pki.
fn second_client(pki: &Pki, name: &str) -> Pki {
    let dir = tempfile::Builder::new()
        .prefix("snigate-pki-")
        .tempdir()
        .unwrap();
    fs::copy(pki.ca(), dir.path().join("ca.crt")).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let (ca, ca_key) = ca_params(pki);
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    fs::write(dir.path().join("client.crt"), cert.pem()).unwrap();
    fs::write(dir.path().join("client.key"), key.serialize_pem()).unwrap();
    Pki { dir }
}

/// A CRL from `pki`'s CA revoking the client certificates of `revoked`.
fn crl(pki: &Pki, revoked: &[&Pki], next_update: time::Duration) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let revoked_certs = revoked
        .iter()
        .map(|r| {
            let pem = fs::read(r.client_cert()).unwrap();
            let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
            let cert = pem.parse_x509().unwrap();
            rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(cert.raw_serial()),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }
        })
        .collect();
    let (ca, ca_key) = ca_params(pki);
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::days(30),
        next_update: now + next_update,
        crl_number: rcgen::SerialNumber::from(now.unix_timestamp() as u64),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    params
        .signed_by(&issuer)
        .unwrap()
        .pem()
        .unwrap()
        .into_bytes()
}

/// The TLS alert a new connection with `pki`'s client certificate ends with, if any. With
/// TLS 1.3 the client finishes its handshake first and reads the alert afterwards.
async fn rejection(pki: &Pki, gw: SocketAddr) -> Option<rustls::AlertDescription> {
    match direct(pki, gw, REDIS_SNI).await {
        Err(e) => alert(&e),
        Ok((mut c, _)) => match c.cmd(&[b"PING"]).await {
            Ok(reply) => {
                assert_eq!(reply, Reply::Status("PONG".into()));
                None
            }
            Err(e) => Some(alert(&e).unwrap_or_else(|| panic!("no alert: {e}"))),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_updates_apply_to_new_handshakes_while_traffic_flows() {
    let pki = Pki::new();
    let keeper = second_client(&pki, "keeper.snigate.test");
    let redis = RedisServer::start();
    let files = |crl_pem: Vec<u8>| {
        let mut f = gateway_secret(&pki);
        f.push(("crl.pem", crl_pem));
        f
    };
    let mut secret = Secret::new(&files(crl(&pki, &[], time::Duration::days(7))));
    let gw_files = ServerFiles {
        cert: secret.path("server.crt"),
        key: secret.path("server.key"),
        client_ca: Some(secret.path("ca.crt")),
        crl: Some(secret.path("crl.pem")),
    };
    let opts = Opts::new().admin();
    let routes = [Route::new("redis", REDIS_SNI, "redis", redis.addr())];
    let gw = Gateway::from_yaml_with(
        &gateway_yaml_with("127.0.0.1:0", &gw_files, &routes, &opts),
        &opts,
    );
    let sc_opts = Opts::new().admin().timeout("probe_interval", "0s");
    let sc = Sidecar::start_with(
        &pki,
        &[Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)],
        &sc_opts,
    );
    assert_eq!(rejection(&pki, gw.addr).await, None);
    assert_eq!(rejection(&keeper, gw.addr).await, None);
    let t = Traffic::start(loopback(sc.port("redis")), "crl").await;
    t.wait_progress(5);

    // A new CRL revoking the sidecar's certificate: new handshakes with it are refused;
    // the connection already carrying traffic is not cut.
    secret.update(&files(crl(&pki, &[&pki], time::Duration::days(7))));
    wait_reloads(&gw.proc, "certificates", "success", 1.0);
    let revoked = Some(rustls::AlertDescription::CertificateRevoked);
    assert_eq!(rejection(&pki, gw.addr).await, revoked);
    assert_eq!(rejection(&keeper, gw.addr).await, None);
    t.wait_progress(5);

    // An expired CRL is refused; the previous one stays in force (fail closed).
    secret.update(&files(crl(&pki, &[], -time::Duration::days(1))));
    wait_reloads(&gw.proc, "certificates", "failure", 1.0);
    assert_eq!(rejection(&pki, gw.addr).await, revoked);
    assert_eq!(rejection(&keeper, gw.addr).await, None);
    t.wait_progress(5);

    let r = t.finish().await;
    assert_eq!(r.sha_set, r.sha_got, "checksums");
    let want = (r.sent as f64, r.received as f64);
    assert_eq!(relayed(&sc.proc, "redis", 1.0), want);
}
