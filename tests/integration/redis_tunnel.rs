//! Redis through the whole chain: client -> sidecar -> (mTLS) -> gateway -> redis-server.
//! Real clients: the `redis` crate and redis-cli.

use std::thread;
use std::time::Duration;

use crate::support::clients::resp::payload;
use crate::support::clients::tools::redis_cli;
use crate::support::*;

struct Chain {
    redis: RedisServer,
    pki: Pki,
    gw: Gateway,
}

fn chain() -> Chain {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let redis_route = worker_route("redis", REDIS_SNI, Protocol::Redis, redis.addr());
    let gw = Gateway::start(&gateway(&pki, vec![redis_route]));
    Chain { redis, pki, gw }
}

fn sidecar_of(c: &Chain) -> Sidecar {
    Sidecar::start(&redis_sidecar(&c.pki, c.gw.addr))
}

/// A `redis` crate connection to the sidecar's local port.
fn tunnelled(sc: &Sidecar) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{}/", sc.addr("redis"))).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect through sidecar");
    con.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    con
}

#[test]
fn set_then_get_through_sidecar_reaches_the_real_server() {
    let c = chain();
    let sc = sidecar_of(&c);
    let mut con = tunnelled(&sc);
    let ok: String = redis::cmd("SET")
        .arg("greeting")
        .arg("hello world")
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, "OK");
    let got: String = redis::cmd("GET").arg("greeting").query(&mut con).unwrap();
    assert_eq!(got, "hello world");
    let direct: String = redis::cmd("GET")
        .arg("greeting")
        .query(&mut c.redis.direct())
        .unwrap();
    assert_eq!(
        direct, "hello world",
        "the value must be in the backend redis-server"
    );
}

#[test]
fn ten_megabyte_value_round_trips_byte_exact() {
    let c = chain();
    let sc = sidecar_of(&c);
    let mut con = tunnelled(&sc);
    let value = payload(0x5eed, 10 * 1024 * 1024);
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut con)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert_eq!(back.len(), value.len());
    assert!(back == value, "10 MB value changed in the tunnel");
    let stored: Vec<u8> = redis::cmd("GET")
        .arg("big")
        .query(&mut c.redis.direct())
        .unwrap();
    assert!(stored == value, "10 MB value changed on the way in");
}

#[test]
fn brpop_is_woken_by_lpush_from_another_connection() {
    let c = chain();
    let sc = sidecar_of(&c);
    let mut waiter = tunnelled(&sc);
    let blocked = thread::spawn(move || {
        redis::cmd("BRPOP")
            .arg("jobs")
            .arg(25)
            .query::<Option<(String, String)>>(&mut waiter)
    });
    // Readiness, not a sleep: the BRPOP is parked in redis-server.
    wait_for("BRPOP blocked in redis-server", || {
        (c.redis.blocked_clients() == 1).then_some(())
    });
    let mut pusher = tunnelled(&sc);
    let len: i64 = redis::cmd("LPUSH")
        .arg("jobs")
        .arg("job-1")
        .query(&mut pusher)
        .unwrap();
    assert_eq!(len, 1);
    let popped = blocked.join().unwrap().expect("BRPOP reply");
    assert_eq!(popped, Some(("jobs".to_owned(), "job-1".to_owned())));
}

#[test]
fn publish_reaches_subscriber_through_the_tunnel() {
    let c = chain();
    let sc = sidecar_of(&c);
    let mut sub_con = tunnelled(&sc);
    let mut sub = sub_con.as_pubsub();
    sub.subscribe("events").unwrap();
    let mut publisher = tunnelled(&sc);
    for (i, msg) in ["first", "second", "third"].iter().enumerate() {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg("events")
            .arg(*msg)
            .query(&mut publisher)
            .unwrap();
        assert_eq!(receivers, 1, "message {i}: one subscriber expected");
    }
    for expected in ["first", "second", "third"] {
        let m = sub.get_message().unwrap();
        assert_eq!(m.get_channel_name(), "events");
        assert_eq!(m.get_payload::<String>().unwrap(), expected);
    }
}

#[test]
fn redis_cli_with_tls_and_sni_talks_to_the_gateway_directly() {
    let c = chain();
    let files = [c.pki.ca(), c.pki.client_cert(), c.pki.client_key()];
    let [ca, cert, key] = files.map(|f| f.display().to_string());
    let cli = |args: &[&str]| {
        let mut all = vec![
            "--tls", "--sni", REDIS_SNI, "--cacert", &ca, "--cert", &cert,
        ];
        all.extend(["--key", &key]);
        all.extend(args);
        redis_cli(c.gw.port(), &all)
    };
    assert_eq!(cli(&["SET", "direct-key", "via redis-cli"]), "OK\n");
    assert_eq!(cli(&["GET", "direct-key"]), "via redis-cli\n");
    assert_eq!(cli(&["PING"]), "PONG\n");
    let direct: String = redis::cmd("GET")
        .arg("direct-key")
        .query(&mut c.redis.direct())
        .unwrap();
    assert_eq!(direct, "via redis-cli");
}
