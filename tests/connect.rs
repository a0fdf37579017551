//! `snigate connect`: one tunnel from flags, used by real psql and redis-cli against a real
//! gateway; its banner, its errors, and Ctrl-C.

mod support;

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::pki::{p, CLIENT_NAME, PG_SNI, REDIS_SNI};
use support::*;
use tempfile::TempDir;

/// A running `snigate connect` with its stdout lines and its stderr log.
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
        let mut child = Command::new(snigate_bin())
            .arg("connect")
            .arg(gateway.addr.to_string())
            .args(["--server-name", sni, "--protocol", protocol])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--ca", &p(&ca.ca())])
            .args(["--cert", &p(&client.client_cert())])
            .args(["--key", &p(&client.client_key())])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
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

    fn wait_log(&self, text: &str) {
        wait_for(text, READY, || self.log().contains(text).then_some(()));
    }

    /// Ctrl-C: exits 0 at once (no connection open) and the port is closed.
    fn interrupt(mut self) {
        let status = self.guard.stop_with(libc::SIGINT, Duration::from_secs(8));
        assert_eq!(status.code(), Some(0), "{}", self.log());
        let gone = std::net::TcpStream::connect(loopback(self.port));
        assert!(gone.is_err(), "still listening after Ctrl-C");
    }
}

fn gateway(pki: &Pki, redis: &RedisServer, pg: &Postgres) -> Gateway {
    let allow = format!("dns:{CLIENT_NAME}");
    Gateway::start(
        pki,
        &[
            Route::new("redis", REDIS_SNI, "redis", redis.addr()).allow(&[&allow]),
            Route::new(
                "postgres",
                PG_SNI,
                "postgres",
                format!("127.0.0.1:{}", pg.port),
            )
            .allow(&[&allow]),
        ],
    )
}

/// redis-cli with `args`; what it printed on stdout and stderr.
fn redis_cli(args: &[&str]) -> String {
    let out = run(Command::new("redis-cli").args(args), CMD);
    let (o, e) = texts(&out);
    o + &e
}

#[test]
fn psql_and_redis_cli_use_the_printed_commands() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let gw = gateway(&pki, &redis, &pg);

    let c = Connect::start(&gw, REDIS_SNI, "redis", &pki, &pki);
    let (tunnel, usage) = c.banner();
    let listen = format!("127.0.0.1:{}", c.port);
    assert_eq!(
        tunnel,
        format!(
            "snigate connect: {listen} -> {} (redis, SNI {REDIS_SNI}); Ctrl-C stops",
            gw.addr
        )
    );
    assert_eq!(usage, format!("  redis-cli -h 127.0.0.1 -p {}", c.port));
    c.wait_log("gateway probe passed");
    let args: Vec<&str> = usage.split_whitespace().skip(1).collect();
    let set: Vec<&str> = args
        .iter()
        .copied()
        .chain(["SET", "via", "connect"])
        .collect();
    assert_eq!(redis_cli(&set), "OK\n");
    let get: Vec<&str> = args.iter().copied().chain(["GET", "via"]).collect();
    assert_eq!(redis_cli(&get), "connect\n");
    c.interrupt();

    let c = Connect::start(&gw, PG_SNI, "postgres", &pki, &pki);
    let (tunnel, usage) = c.banner();
    assert!(
        tunnel.contains(&format!("(postgres, SNI {PG_SNI})")),
        "{tunnel}"
    );
    let url = format!("postgresql://USER@127.0.0.1:{}/DBNAME", c.port);
    assert_eq!(usage, format!("  psql \"{url}\""));
    let url = url
        .replace("USER", "postgres")
        .replace("DBNAME", "postgres");
    let out = run(
        Command::new("psql")
            .arg(&url)
            .args(["-XAtc", "select 'through ' || 'connect'"])
            .env_remove("PGSSLMODE"),
        CMD,
    );
    let (o, e) = texts(&out);
    assert_eq!(o, "through connect\n", "psql: {e}\nlog:\n{}", c.log());
    c.interrupt();
}

/// A gateway certificate from another CA: the first probe says so in the log, and a client
/// gets the sidecar's native error (ERR: retrying cannot fix a certificate).
#[test]
fn an_untrusted_gateway_is_reported_and_clients_get_a_native_error() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let gw = gateway(&pki, &redis, &pg);
    let stranger = Pki::new();
    let c = Connect::start(&gw, REDIS_SNI, "redis", &stranger, &pki);
    c.banner();
    c.wait_log("gateway probe failed");
    let reply = redis_cli(&["-p", &c.port.to_string(), "PING"]);
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
    let ca = p(&pki.ca());
    let missing = p(&pki.path().join("missing.crt"));
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
        let out = run(
            Command::new(snigate_bin())
                .args(["connect", "gateway.example.test:443", "--ca", &ca])
                .args(args),
            CMD,
        );
        let (o, e) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {o}{e}");
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert!(o.is_empty(), "{o}");
    }
}
