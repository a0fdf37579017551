use redis_protocol::resp2::decode::decode as resp2;
use redis_protocol::resp3::decode::complete::decode as resp3;

use super::super::replay::replay;
use super::*;
use crate::config::Protocol;

/// Where each command or reply ends, by redis-protocol's decoders (inline commands: lines).
fn frame_ends(stream: &[u8], client: bool) -> Vec<usize> {
    let (mut ends, mut at) = (Vec::new(), 0);
    while at < stream.len() {
        let rest = &stream[at..];
        at += if client && rest[0] != b'*' {
            rest.iter().position(|&b| b == b'\n').unwrap() + 1
        } else {
            match resp2(rest) {
                Ok(Some((_, len))) => len,
                _ => resp3(rest).unwrap().unwrap().1,
            }
        };
        ends.push(at);
    }
    ends
}

#[test]
fn redis_cli_pipelining_hundreds_of_commands() {
    assert_eq!(replay("redis_cli_pipe", Protocol::Redis, frame_ends), 1);
}

#[test]
fn inline_commands_and_an_empty_line_that_gets_no_reply() {
    assert_eq!(replay("redis_inline", Protocol::Redis, frame_ends), 2);
}

/// PING, 64 KiB values, pipelines, MULTI/EXEC (one with an error inside), hashes, sorted
/// sets, sets, BRPOP answered and BRPOP timed out, in RESP2 then RESP3 (HELLO 3), the latter
/// with invalidation pushes arriving while nothing is outstanding and while a BRPOP is.
#[test]
fn redis_py_sessions_in_resp2_and_resp3() {
    assert_eq!(replay("redis_py_resp2", Protocol::Redis, frame_ends), 11);
    assert_eq!(replay("redis_py_resp3", Protocol::Redis, frame_ends), 17);
}

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, messages (one of 64 KiB), PING while subscribed and
/// every kind of UNSUBSCRIBE, with RESP2 arrays and with RESP3 pushes.
#[test]
fn pub_sub_in_resp2_and_resp3() {
    assert_eq!(replay("redis_pubsub_resp2", Protocol::Redis, frame_ends), 8);
    assert_eq!(replay("redis_pubsub_resp3", Protocol::Redis, frame_ends), 8);
}

fn after(exchanges: &[(&[u8], &[u8])]) -> Redis {
    let mut redis = Redis::default();
    for (command, reply) in exchanges {
        redis.client_sent(command);
        redis.server_sent(reply);
    }
    redis
}

#[test]
fn a_pipeline_is_at_rest_only_once_its_last_reply_is_forwarded() {
    let mut redis = after(&[(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", b"+PONG\r\n")]);
    assert!(!redis.at_rest());
    assert_eq!(redis.activity(), "replies outstanding");
    redis.server_sent(b"+PO");
    assert_eq!(redis.activity(), "a partial reply");
    redis.server_sent(b"NG\r\n");
    assert!(redis.at_rest());
}

/// Subscribed, a connection waits for messages: never at rest; a message is not a reply.
#[test]
fn a_subscriber_is_busy_and_a_message_is_not_the_reply_it_waits_for() {
    let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n";
    let message = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n";
    let unsubscribed = b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n";
    let (ping, subscribe) = (
        b"*1\r\n$4\r\nPING\r\n",
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n",
    );
    let resp3 = |resp2: &[u8]| -> Vec<u8> {
        let push = |b: &u8| if *b == b'*' { b'>' } else { *b };
        resp2.iter().map(push).collect()
    };
    let resp2_pong: &[u8] = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    for (protocol, pong) in [(2, resp2_pong), (3, b"+PONG\r\n")] {
        let speak = |frame: &[u8]| {
            if protocol == 3 {
                resp3(frame)
            } else {
                frame.to_vec()
            }
        };
        let mut redis = after(&[(subscribe, &speak(subscribed)), (ping, &speak(message))]);
        assert_eq!(redis.activity(), "replies outstanding", "RESP{protocol}");
        redis.server_sent(pong);
        assert_eq!(redis.activity(), "a subscription open", "RESP{protocol}");
        redis.client_sent(b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\na\r\n");
        redis.server_sent(&speak(unsubscribed));
        assert!(redis.at_rest(), "RESP{protocol}: {redis:?}");
    }
}

#[test]
fn an_array_that_starts_with_message_is_a_reply_unless_subscribed() {
    let lrange = b"*4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1\r\n";
    let items = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n";
    assert!(after(&[(lrange, items)]).at_rest());
}

#[test]
fn attributes_are_not_replies_and_empty_commands_expect_none() {
    let redis = after(&[(
        b"*0\r\n\r\n*1\r\n$4\r\nPING\r\n",
        b"|1\r\n+key\r\n%1\r\n+a\r\n:1\r\n+PONG\r\n",
    )]);
    assert!(redis.at_rest());
    let redis = after(&[(b"*1\r\n$4\r\nPING\r\n", b"|1\r\n+key\r\n+value\r\n")]);
    assert!(!redis.at_rest());
}

/// The documented imprecisions err towards "not at rest".
#[test]
fn client_reply_off_and_an_unknowable_unsubscribe_never_rest() {
    let off = b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n*1\r\n$4\r\nPING\r\n";
    assert!(!after(&[(off, b"")]).at_rest());
    let subscribe = b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n";
    let subscribed = b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
        >3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n";
    let mut redis = after(&[(subscribe, subscribed)]);
    assert_eq!(redis.activity(), "a subscription open");
    // Pipelined: the argument-less UNSUBSCRIBE is counted before `a` is gone.
    redis.client_sent(b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\na\r\n*1\r\n$11\r\nUNSUBSCRIBE\r\n");
    redis.server_sent(b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n");
    redis.server_sent(b">3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n");
    assert!(
        !redis.at_rest(),
        "expects more confirmations than come: waits, never loses"
    );
}

#[test]
fn what_is_not_redis_is_never_at_rest() {
    assert!(!after(&[(b"*1\r\n+PING\r\n", b"")]).at_rest());
    assert!(!after(&[(b"PING\r\n", b"?\r\n")]).at_rest());
}

/// Frames read whole in one chunk and byte by byte leave the same state, unusual ones too.
#[test]
fn whole_frames_and_byte_by_byte_agree() {
    let replies: &[&[u8]] = &[
        b"*2\r\n$-1\r\n:5\r\n",
        b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
        b"*3\r\n$13\r\nthirteen-long\r\n+x\r\n:7\r\n",
        b"~2\r\n,1.5\r\n(12\r\n",
        b"$-1\r\n:-3\r\n_\r\n#t\r\n!3\r\nerr\r\n=7\r\ntxt:abc\r\n",
        b"*1\r\n*1\r\n:1\r\n%1\r\n+a\r\n+b\r\n|1\r\n+k\r\n+v\r\n+OK\r\n",
        b"$\r\n\r\n*-1\r\n",
    ];
    for bytes in replies {
        let mut whole = Redis::default();
        whole.client_sent(b"*1\r\n$9\r\nSUBSCRIBE\r\n");
        let mut bytewise = whole.clone();
        whole.server_sent(bytes);
        for byte in bytes.chunks(1) {
            bytewise.server_sent(byte);
        }
        assert_eq!(whole, bytewise, "{}", String::from_utf8_lossy(bytes));
    }
}

/// A blocking pop without its reply is at rest (Redis takes nothing until it answers); once
/// the reply begins it is busy until forwarded whole; a command behind it is busy.
#[test]
fn a_blocked_pop_is_at_rest_until_its_reply_begins() {
    let brpop = b"*3\r\n$5\r\nBRPOP\r\n$4\r\njobs\r\n$1\r\n0\r\n";
    let mut redis = after(&[]);
    redis.client_sent(brpop);
    assert!(redis.at_rest(), "{redis:?}");
    redis.server_sent(b"*2\r\n$4\r\njobs\r\n$2\r\nt");
    assert_eq!(redis.activity(), "a partial reply");
    redis.server_sent(b"k\r\n");
    assert!(redis.at_rest());
    redis.client_sent(brpop);
    redis.client_sent(b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(redis.activity(), "replies outstanding");
}
