//! The gateway logs in to Redis for its clients: redis-cli, redis-py (RESP2 and HELLO 3) and
//! kombu without a password, clients that still send their own AUTH, and a later AUTH that
//! would switch users. The client's credentials never reach Redis.

use super::*;
use crate::support::clients::resp::{encode, Reply, Resp};
use crate::support::clients::tls::{resp_line, ClientOpts};
use crate::support::clients::tools::{
    python, redis5_python, redis_cli, run_python, topology_python,
};

fn chain(redis: &RedisServer) -> Chain {
    Chain::start(None, Some(redis))
}

/// redis-cli through `port`, never warning about a password on its command line; stdout.
fn redis_cli_quiet(port: u16, args: &[&str]) -> String {
    let mut all = vec!["--no-auth-warning"];
    all.extend(args);
    redis_cli(port, &all)
}

/// Entries of `ACL LOG`: a client AUTH that reached Redis with a wrong password or user
/// leaves one.
fn acl_log(redis: &RedisServer) -> usize {
    let log: Vec<::redis::Value> = ::redis::cmd("ACL")
        .arg("LOG")
        .query(&mut redis_admin(redis))
        .unwrap();
    log.len()
}

#[test]
fn redis_cli_without_a_password_and_with_its_own_auth() {
    let redis = redis_with_users();
    let c = chain(&redis);
    let port = c.sc.port("redis");
    assert_eq!(redis_cli_quiet(port, &["ACL", "WHOAMI"]), "celery\n");
    assert_eq!(redis_cli_quiet(port, &["SET", "k", "v"]), "OK\n");
    // A worker config that still carries an old password, or another user's.
    assert_eq!(
        redis_cli_quiet(port, &["-a", "stale", "ACL", "WHOAMI"]),
        "celery\n"
    );
    let other = ["--user", "admin", "--pass", "x", "GET", "k"];
    assert_eq!(redis_cli_quiet(port, &other), "v\n");
    assert_eq!(acl_log(&redis), 0, "a client AUTH reached Redis");
}

#[test]
fn redis_py_5_resp2_and_8_hello_3_with_and_without_auth() {
    let redis = redis_with_users();
    let c = chain(&redis);
    let code = "import os, redis\n\
                port = int(os.environ['PORT'])\n\
                for kw in ({}, {'password': 'stale'}, {'username': 'other', 'password': 'x'}):\n\
                \x20   for protocol in (2, 3):\n\
                \x20       r = redis.Redis(port=port, protocol=protocol, **kw)\n\
                \x20       p = r.pipeline(transaction=False)\n\
                \x20       p.set('k', 'v'); p.incr('n'); p.get('k'); p.execute_command('ACL', 'WHOAMI')\n\
                \x20       print(redis.__version__.split('.')[0], protocol, p.execute()[2:])\n";
    let port = c.sc.port("redis").to_string();
    for python in [python(), redis5_python()] {
        let out = run_python(&python, code, &[("PORT", port.clone())]);
        assert_eq!(out.lines().count(), 6, "{out}");
        assert!(
            out.lines().all(|l| l.ends_with("[b'v', b'celery']")),
            "{out}"
        );
    }
    assert_eq!(acl_log(&redis), 0, "a client AUTH reached Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_auth_may_not_switch_users_and_replies_stay_in_order() {
    let redis = redis_with_users();
    let c = chain(&redis);
    let mut tls = ClientOpts::new(&c.pki)
        .connect(c.gw.addr, REDIS_SNI)
        .await
        .unwrap();
    assert_eq!(
        resp_line(&mut tls, &["AUTH", "someone", "x"]).await,
        "+OK\r\n"
    );
    let mut s = Resp::new(tls);
    let commands: [&[&[u8]]; 5] = [
        &[b"SET", b"k", b"v"],
        &[b"AUTH", b"admin", b"pw"],
        &[b"GET", b"k"],
        &[b"AUTH", b"celery", b"whatever"],
        &[b"ACL", b"WHOAMI"],
    ];
    // Pipelined in one write: the refusal must come back in the AUTH's place.
    let pipelined: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
    s.write(&pipelined).await.unwrap();
    let mut replies = Vec::new();
    for _ in commands {
        replies.push(s.read_reply().await.unwrap());
    }
    let refused = "ERR snigate: redis: AUTH is managed by the gateway";
    let want = [
        Reply::Status("OK".into()),
        Reply::Error(refused.into()),
        Reply::Bulk(Some(b"v".to_vec())),
        Reply::Status("OK".into()),
        Reply::Bulk(Some(b"celery".to_vec())),
    ];
    assert_eq!(replies, want);
    assert_eq!(acl_log(&redis), 0, "a client AUTH reached Redis");
}

#[test]
fn kombu_publishes_and_consumes_without_a_password() {
    let redis = redis_with_users();
    let c = chain(&redis);
    let code = "import os, kombu\n\
                url = 'redis://localhost:%s/0' % os.environ['PORT']\n\
                with kombu.Connection(url) as conn:\n\
                \x20   q = conn.SimpleQueue('login-test')\n\
                \x20   q.put({'n': 42})\n\
                \x20   m = q.get(timeout=10); m.ack(); print(m.payload['n'])\n\
                \x20   q.close()\n";
    let port = c.sc.port("redis").to_string();
    assert_eq!(
        run_python(&topology_python(), code, &[("PORT", port)]),
        "42\n"
    );
}

#[test]
fn wrong_password_file_gets_redis_refusal() {
    let redis = redis_with_users();
    let wrong = "Not-The-Password-91ee";
    let c = Chain::with(None, Some(&redis), wrong, |_| {});
    let out = redis_cli_quiet(c.sc.port("redis"), &["PING"]);
    let want = "ERR snigate: redis: backend refused the gateway's login: WRONGPASS invalid \
                username-password pair or user is disabled.";
    assert_eq!(out.trim_end(), want);
    c.gw.wait_line("the refusal", |l| {
        l.is("refused") && l.has("reason", "backend_refused_login")
    });
    assert!(!c.gw.log_text().contains(wrong), "{}", c.gw.log_text());
}
