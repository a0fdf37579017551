//! `snigate connect`: one tunnel from flags, used by real psql and redis-cli against a real
//! gateway; its banner, its errors, and Ctrl-C.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;

use tempfile::TempDir;

use crate::support::clients::postgres::psql;
use crate::support::clients::tools::redis_cli;
use crate::support::launch::command;
use crate::support::logs::Line;
use crate::support::process::ChildGuard;
use crate::support::*;

/// A running `snigate connect` with its stdout lines and its JSON log.
struct Connect {
    guard: ChildGuard,
    stdout: mpsc::Receiver<String>,
    log: PathBuf,
    _dir: TempDir,
    port: u16,
}

impl Connect {
    fn start(gateway: &Gateway, sni: &str, protocol: &str, ca: &Pki, client: &Pki) -> Connect {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("connect.log");
        let port = free_port();
        let mut cmd = command();
        cmd.args(["--log-format", "json", "connect", &gateway.addr.to_string()]);
        cmd.args(["--server-name", sni, "--protocol", protocol]);
        cmd.args(["--listen", &loopback(port).to_string()]);
        cmd.arg("--ca").arg(ca.ca());
        cmd.arg("--cert").arg(client.client_cert());
        cmd.arg("--key").arg(client.client_key());
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = cmd.stderr(File::create(&log).unwrap()).spawn().unwrap();
        let (tx, stdout) = mpsc::channel();
        let pipe = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Connect {
            guard: ChildGuard::new(child, libc::SIGKILL),
            stdout,
            log,
            _dir: dir,
            port,
        }
    }

    /// The banner: the tunnel line and the command to use.
    fn banner(&self) -> (String, String) {
        let line = || {
            self.stdout
                .recv_timeout(READY)
                .unwrap_or_else(|_| panic!("no banner; log:\n{}", self.log()))
        };
        (line(), line())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a log line whose message starts with `start`.
    fn wait_log(&self, start: &str) {
        wait_for(start, || {
            let log = self.log();
            let mut lines = log.lines().map(Line::parse);
            lines.any(|l| l.message().starts_with(start)).then_some(())
        });
    }

    /// Ctrl-C: exits 0 at once (no connection open) and the port is closed.
    fn interrupt(mut self) {
        let status = self.guard.stop(libc::SIGINT);
        assert_eq!(status.code(), Some(0), "{}", self.log());
        let gone = std::net::TcpStream::connect(loopback(self.port));
        assert!(gone.is_err(), "still listening after Ctrl-C");
    }
}

fn gateway_for(pki: &Pki, redis: &RedisServer, pg: &Postgres) -> Gateway {
    let routes = vec![
        worker_route("redis", REDIS_SNI, Protocol::Redis, redis.addr()),
        worker_route("postgres", PG_SNI, Protocol::Postgres, pg.addr()),
    ];
    Gateway::start(&gateway(pki, routes))
}

#[test]
fn psql_and_redis_cli_use_the_printed_commands() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let gw = gateway_for(&pki, &redis, &pg);

    let c = Connect::start(&gw, REDIS_SNI, "redis", &pki, &pki);
    let (tunnel, usage) = c.banner();
    let listen = loopback(c.port);
    let want = format!(
        "snigate connect: {listen} -> {} (redis, SNI {REDIS_SNI}); Ctrl-C stops",
        gw.addr
    );
    assert_eq!(tunnel, want);
    assert_eq!(usage, format!("  redis-cli -h 127.0.0.1 -p {}", c.port));
    c.wait_log("gateway probe passed");
    // The printed command is the one used: `-h 127.0.0.1 -p <port>`.
    assert_eq!(redis_cli(c.port, &["SET", "via", "connect"]), "OK\n");
    assert_eq!(redis_cli(c.port, &["GET", "via"]), "connect\n");
    c.interrupt();

    let c = Connect::start(&gw, PG_SNI, "postgres", &pki, &pki);
    let (tunnel, usage) = c.banner();
    let tunnel_names = format!("(postgres, SNI {PG_SNI})");
    assert!(tunnel.contains(&tunnel_names), "{tunnel}");
    let url = format!("postgresql://USER@127.0.0.1:{}/DBNAME", c.port);
    assert_eq!(usage, format!("  psql \"{url}\""));
    let url = url
        .replace("USER", "postgres")
        .replace("DBNAME", "postgres");
    let out = psql(&url, "select 'through ' || 'connect'");
    let (o, e) = texts(&out);
    assert_eq!(o, "through connect\n", "psql: {e}\nlog:\n{}", c.log());
    c.interrupt();
}

/// A gateway certificate from another CA: the first probe says so in the log, and a client
/// gets the sidecar's native error (ERR: retrying cannot fix a certificate).
#[test]
fn an_untrusted_gateway_is_reported_and_clients_get_a_native_error() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let gw = gateway_for(&pki, &redis, &pg);
    let stranger = Pki::new();
    let c = Connect::start(&gw, REDIS_SNI, "redis", &stranger, &pki);
    c.banner();
    c.wait_log("gateway probe failed");
    let reply = redis_cli(c.port, &["PING"]);
    let want = format!(
        "ERR snigate: redis: TLS handshake with gateway {} failed: ",
        gw.addr
    );
    assert!(reply.starts_with(&want), "{reply}");
    assert!(reply.contains("invalid peer certificate"), "{reply}");
    c.interrupt();
}

/// Bad flags exit 2 before binding anything, naming the flag.
#[test]
fn bad_flags_name_the_flag_and_exit_2() {
    let pki = Pki::new();
    let missing = pki.path().join("missing.crt").display().to_string();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--server-name", "10.0.0.1", "--listen", "127.0.0.1:6379"],
            "error: snigate connect: --server-name: `10.0.0.1` is an IP address",
        ),
        (
            &["--listen", "127.0.0.1:15000"],
            "error: snigate connect: --protocol: cannot tell the protocol from port 15000",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:6379",
                "--cert",
                &missing,
                "--key",
                &missing,
            ],
            "error: snigate connect: --cert: cannot load",
        ),
    ];
    for (args, want) in cases {
        let mut cmd = command();
        cmd.args(["connect", "gateway.example.test:443", "--ca"])
            .arg(pki.ca());
        let out = run(cmd.args(args), CMD);
        let (o, e) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {o}{e}");
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(o.is_empty(), "{o}");
    }
}
