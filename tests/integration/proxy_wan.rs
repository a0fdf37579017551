//! Egress through squid across the emulated WAN link (bench/wanlink between the sidecar and
//! the proxy): TLS and mutual authentication go end to end through the proxy, CONNECT costs
//! one round trip on the link, and a warm connection has paid for it before the client came.

use crate::support::clients::tools::redis_cli;
use crate::support::fixtures::standard_routes;
use crate::support::servers::{Squid, SquidOpts, Wanlink};
use crate::support::*;

const USER: &str = "worker";
const PASSWORD: &str = "Wan-Proxy-Pw-2b9d";

/// Round trips the client side waited for on link connection `conn` before its close: each
/// time the deliveries turn from `>` (towards the proxy) to `<`.
fn round_trips(link: &Wanlink, conn: u64) -> usize {
    let trace = link.trace();
    let deliveries = trace.iter().filter(|(c, _, _)| *c == conn);
    let before_close = deliveries.take_while(|(_, _, what)| what != "FIN" && what != "RST");
    let directions: Vec<&str> = before_close.map(|(_, dir, _)| dir.as_str()).collect();
    directions.windows(2).filter(|w| w == &[">", "<"]).count()
}

#[test]
fn through_squid_across_a_wan_link_cold_and_warm() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw = Gateway::start(&gateway(&pki, standard_routes(Some(&redis), None)));
    let squid = Squid::start(&SquidOpts {
        auth: Some((USER.into(), PASSWORD.into())),
        ..SquidOpts::default()
    });
    let link = Wanlink::start(squid.addr(), "40ms");
    let url = format!("http://{USER}:{PASSWORD}@{}", link.addr);
    let mut config = redis_sidecar(&pki, gw.addr);
    config.tunnels[0].proxy = Some(url.as_str().into());

    // Cold: the client's connection pays CONNECT, the TLS handshake and its command.
    let sc = Sidecar::start(&config);
    let value = "v".repeat(100_000);
    assert_eq!(redis_cli(sc.port("redis"), &["SET", "big", &value]), "OK\n");
    assert_eq!(
        redis_cli(sc.port("redis"), &["GET", "big"]),
        format!("{value}\n")
    );
    drop(sc);
    // (The SET's 100 kB leave in two parts: its first 16 KiB with START, the rest once the
    // gateway has answered STARTED; the GET is one write.)
    let trips = round_trips(&link, 1);
    assert_eq!(trips, 3, "CONNECT, TLS, GET: {:?}", link.trace());

    // Warm: CONNECT and TLS were paid when the sidecar started; the client waits for its
    // command only, on the connection the link accepted first.
    config.tunnels[0].warm = 1;
    let sc = Sidecar::start(&config);
    let first_warm = 2;
    // Established: CONNECT, the TLS handshake, and the client's Finished answered by the
    // gateway's session tickets (which no client waits for, but which would otherwise land
    // in the middle of the count).
    wait_for("the warm connection's session tickets", || {
        (round_trips(&link, first_warm) >= 3).then_some(())
    });
    let before = round_trips(&link, first_warm);
    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    drop(sc);
    wait_for("the warm connection's close", || {
        let trace = link.trace();
        let closed = trace.iter().any(|(c, _, w)| *c == first_warm && w == "FIN");
        closed.then_some(())
    });
    assert_eq!(
        round_trips(&link, first_warm) - before,
        1,
        "{:?}",
        link.trace()
    );

    // The proxy saw CONNECTs to the gateway and nothing else; the gateway saw the worker.
    let seen = squid.wait_access(4);
    let target = gw.addr.to_string();
    assert!(
        seen.iter()
            .all(|a| a.method == "CONNECT" && a.target == target && a.user == USER),
        "{seen:#?}"
    );
    let worker = format!("dns:{CLIENT_NAME}");
    let served = gw.wait_lines("closed", 3);
    assert!(
        served.iter().all(|l| l.has("client", &worker)),
        "{served:#?}"
    );
}
