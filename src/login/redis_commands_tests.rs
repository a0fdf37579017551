//! The scanner over every split of real command streams: what reaches Redis must not depend
//! on how TCP cut the client's bytes.

use super::*;
use crate::login::Password;

const PASSWORD: &str = "gw-secret";

fn scanner(user: Option<&str>) -> Commands {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, PASSWORD).unwrap();
    let password = Password::read(&file).unwrap();
    let placeholder = b"<placeholder>".to_vec();
    Commands::new(Policy::new(user.map(str::to_owned), password, placeholder))
}

/// What Redis receives for `chunks`, and how many placeholders were sent.
fn through(commands: &mut Commands, chunks: &[&[u8]]) -> Result<(Vec<u8>, usize), ProtocolError> {
    let (mut to_server, mut refused) = (Vec::new(), 0);
    for chunk in chunks {
        let mut rest = *chunk;
        while !rest.is_empty() {
            let mut out = BytesMut::new();
            let n = match commands.scan(rest, &mut out)? {
                Step::Pass(n) => {
                    // A writer that takes one byte less than offered, when it can.
                    let n = if n > 1 { n - 1 } else { n };
                    to_server.extend_from_slice(&rest[..n]);
                    commands.passed(n);
                    n
                }
                Step::Took(n) => n,
            };
            assert!(n > 0, "no progress");
            to_server.extend_from_slice(&out);
            refused += commands.take_refused();
            rest = &rest[n..];
        }
    }
    Ok((to_server, refused))
}

/// Every split point gives the same result as the whole stream.
fn at_every_split(user: Option<&str>, stream: &[u8]) -> (Vec<u8>, usize) {
    let whole = through(&mut scanner(user), &[stream]).unwrap();
    for cut in 0..stream.len() {
        let split = through(&mut scanner(user), &[&stream[..cut], &stream[cut..]]).unwrap();
        assert_eq!(split, whole, "split at {cut}");
    }
    whole
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = BytesMut::new();
    push_command(
        &mut out,
        &args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
    );
    out.to_vec()
}

#[test]
fn ordinary_commands_pass_unchanged_and_large_values_stream() {
    let big = "v".repeat(3_000);
    let stream = [
        cmd(&["SET", "k", &big]),
        cmd(&["PING"]),
        b"GET k\r\n".to_vec(),
        cmd(&[]),
    ]
    .concat();
    let (to_server, refused) = at_every_split(Some("celery"), &stream);
    assert_eq!(to_server, stream);
    assert_eq!(refused, 0);
}

#[test]
fn the_clients_log_in_is_replaced_by_the_gateways_whatever_user_it_names() {
    let gateway = cmd(&["AUTH", "celery", PASSWORD]);
    for login in [
        cmd(&["AUTH", "old-password"]),
        cmd(&["auth", "someone", "pw"]),
        b"AU\"TH\" 'someone' pw\r\n".to_vec(),
    ] {
        let stream = [login, cmd(&["GET", "k"])].concat();
        let (to_server, refused) = at_every_split(Some("celery"), &stream);
        assert_eq!(to_server, [gateway.clone(), cmd(&["GET", "k"])].concat());
        assert_eq!(refused, 0);
    }
    let (to_server, _) = at_every_split(None, &cmd(&["AUTH", "default", "x"]));
    assert_eq!(
        to_server,
        cmd(&["AUTH", PASSWORD]),
        "default user: one-argument AUTH"
    );
}

#[test]
fn hello_keeps_everything_but_its_auth() {
    let stream = cmd(&["HELLO", "3", "AUTH", "u", "p", "SETNAME", "worker"]);
    let (to_server, _) = at_every_split(Some("celery"), &stream);
    assert_eq!(to_server, cmd(&["HELLO", "3", "SETNAME", "worker"]));
    let plain = [cmd(&["HELLO", "2"]), cmd(&["HELLO"])].concat();
    assert_eq!(at_every_split(Some("celery"), &plain).0, plain);
    let (to_server, refused) = at_every_split(Some("celery"), &cmd(&["HELLO", "AUTH", "u", "p"]));
    assert_eq!((to_server, refused), (b"<placeholder>".to_vec(), 1));
}

#[test]
fn a_later_auth_may_not_switch_users() {
    let stream = [
        cmd(&["HELLO", "3"]),
        cmd(&["GET", "k"]),
        cmd(&["AUTH", "admin", "pw"]),
        cmd(&["HELLO", "3", "AUTH", "admin", "pw"]),
        cmd(&["AUTH", "pw"]),
        cmd(&["AUTH", "celery", "anything"]),
        cmd(&["PING"]),
    ]
    .concat();
    let (to_server, refused) = at_every_split(Some("celery"), &stream);
    let want = [
        cmd(&["HELLO", "3"]),
        cmd(&["GET", "k"]),
        b"<placeholder><placeholder><placeholder>".to_vec(),
        cmd(&["AUTH", "celery", PASSWORD]),
        cmd(&["PING"]),
    ]
    .concat();
    assert_eq!(to_server, want);
    assert_eq!(refused, 3);
}

#[test]
fn reset_logs_out_so_the_next_auth_is_a_log_in_again() {
    let stream = [
        cmd(&["GET", "k"]),
        cmd(&["RESET"]),
        cmd(&["AUTH", "x", "y"]),
    ]
    .concat();
    let (to_server, refused) = at_every_split(Some("celery"), &stream);
    let want = [
        cmd(&["GET", "k"]),
        cmd(&["RESET"]),
        cmd(&["AUTH", "celery", PASSWORD]),
    ]
    .concat();
    assert_eq!((to_server, refused), (want, 0));
}

#[test]
fn what_redis_would_reject_closes_the_connection() {
    for bad in [
        &b"*1\r\nGET\r\n"[..],
        b"*1\r\n$03\r\nGET\r\n",
        b"*1\r\n$3\r\nGETxx",
        b"*+1\r\n",
        b"*1\n",
        b"AUTH \"unbalanced\r\n",
        b"AUTH x\0y\r\n",
    ] {
        assert!(
            through(&mut scanner(Some("celery")), &[bad]).is_err(),
            "{bad:?}"
        );
    }
    let huge = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n", MAX_HELD + 1);
    let mut stream = huge.into_bytes();
    stream.extend(std::iter::repeat_n(b'x', MAX_HELD + 1));
    assert!(through(&mut scanner(None), &[&stream]).is_err());
}
