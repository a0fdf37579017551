//! Log formats: `--log-format json` (one object per line, the close and refusal fields, the
//! flag before or after the subcommand) and the default text format (plain, no colours).

use std::net::SocketAddr;

use crate::support::clients::tls::ClientOpts;
use crate::support::logs::Line;
use crate::support::*;

use super::metrics::set_through;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_one_object_per_line_with_the_close_fields() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let gw = Gateway::start(&redis_gateway(&pki, redis.addr()));
    let config = redis_sidecar(&pki, gw.addr);
    let mut sc = Launch::default()
        .log_format_after_subcommand()
        .sidecar(&config);
    let (sent, received) = set_through(sc.addr("redis"), "json", 12_345).await;
    let no_sni = ClientOpts {
        sni: false,
        ..ClientOpts::new(&pki)
    };
    no_sni.connect(gw.addr, REDIS_SNI).await.unwrap_err();

    for (who, proc) in [("gateway", &gw.proc), ("sidecar", &sc.proc)] {
        let closed = proc.wait_line("a closed line", |l| l.is("closed"));
        let f = &closed.json()["fields"];
        let line = &closed.raw;
        assert_eq!(f["bytes_from_client"], sent, "{who}: {line}");
        assert_eq!(f["bytes_from_backend"], received, "{who}: {line}");
        assert!(f["duration_ms"].is_u64(), "{who}: {line}");
        assert_eq!(f["closed_by"], "client", "{who}: {line}");
        assert!(f["why"].is_string(), "{who}: {line}");
        let span = &closed.json()["span"];
        let peer: Result<SocketAddr, _> = span["peer"].as_str().unwrap_or("").parse();
        assert!(peer.is_ok(), "{who}: peer in {line}");
        assert!(span["id"].is_u64(), "{who}: id in {line}");
        let route_key = if who == "gateway" { "route" } else { "tunnel" };
        assert_eq!(span[route_key], "redis", "{who}: {line}");
        if who == "gateway" {
            assert_eq!(span["client"], format!("dns:{CLIENT_NAME}"), "{line}");
        }
    }
    let refused = gw.wait_line("the refused line", |l| l.is("refused"));
    refused.assert_field("reason", "no_sni");
    refused.assert_field("side", "client");
    assert!(refused.field("error").is_some(), "{}", refused.raw);
    assert!(refused.field("peer").is_some(), "{}", refused.raw);
    // Stop both, so every line they will ever write is checked.
    let mut gw = gw;
    for (who, proc) in [("gateway", &mut gw.proc), ("sidecar", &mut sc.proc)] {
        assert_eq!(proc.stop(libc::SIGTERM).code(), Some(0), "{who}");
        let text = proc.log_text();
        assert!(!text.is_empty(), "{who} logged nothing");
        let lines: Vec<Line> = text.lines().map(Line::parse).collect();
        for l in &lines {
            let v = l.json();
            let shaped = v["timestamp"].is_string() && v["level"].is_string();
            assert!(
                shaped && v["fields"]["message"].is_string(),
                "{who}: {}",
                l.raw
            );
        }
        assert!(lines.iter().any(|l| l.is("listening")), "{who}");
    }
}

#[test]
fn text_logs_are_plain_without_colours_or_secrets() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let text = Launch::default().text_logs();
    let gw = text.gateway(&redis_gateway(&pki, redis.addr()));
    let sc = text.sidecar(&redis_sidecar(&pki, gw.addr));
    for log in [gw.log_text(), sc.log_text()] {
        assert!(
            !log.contains('\u{1b}'),
            "ANSI escape in a non-terminal log:\n{log}"
        );
        assert!(!log.contains("PRIVATE KEY"), "{log}");
        assert!(log.contains(" INFO "), "{log}");
        assert!(log.lines().all(|l| !l.starts_with('{')), "{log}");
    }
}
