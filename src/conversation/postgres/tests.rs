use postgres_protocol::message::backend::Header;

use super::super::replay::replay;
use super::*;
use crate::config::Protocol;

/// Where each message ends: the client's first packet has no type byte; the server's
/// messages are framed by postgres-protocol.
fn message_ends(stream: &[u8], client: bool) -> Vec<usize> {
    let (mut ends, mut at) = (Vec::new(), 0);
    while at < stream.len() {
        let rest = &stream[at..];
        at += if client && at == 0 {
            u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize
        } else {
            let header = Header::parse(rest).unwrap().unwrap();
            header.len() as usize + 1
        };
        ends.push(at);
    }
    ends
}

/// psql: simple queries, several statements in one Query, COPY FROM STDIN and TO STDOUT,
/// a transaction with an error rolled back, \copy, a 70 kB row, Terminate.
#[test]
fn psql_script_with_copy_and_a_failed_transaction() {
    assert_eq!(replay("psql_script", Protocol::Postgres, message_ends), 1);
}

/// psycopg: SCRAM startup, extended queries, prepared statements, pipeline mode (pipelined
/// Syncs), executemany, COPY in and out, a 64 KiB value, a transaction left open (`T`), an
/// error in a transaction (`E`), a long pg_sleep in flight, and a notification and a notice
/// arriving while nothing is outstanding.
#[test]
fn psycopg_session_with_transactions_pipelines_and_notifications() {
    assert_eq!(
        replay("psycopg_session", Protocol::Postgres, message_ends),
        16
    );
}

#[test]
fn not_at_rest_until_the_startup_ends_and_inside_a_transaction() {
    let mut pg = Postgres::default();
    pg.client_sent(&[0, 0, 0, 8, 0, 3, 0, 0]);
    assert_eq!(pg.activity(), "the session's startup");
    pg.server_sent(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05");
    assert_eq!(pg.activity(), "a partial message from the server");
    pg.server_sent(b"T");
    assert_eq!(pg.activity(), "a transaction open");
    pg.client_sent(b"Q\0\0\0\x0bCOMMIT\0");
    assert_eq!(pg.activity(), "a query running");
    pg.server_sent(b"C\0\0\0\x0bCOMMIT\0Z\0\0\0\x05I");
    assert!(pg.at_rest());
    pg.client_sent(b"P\0\0\0\x0as\0q\0\0\0");
    assert_eq!(pg.activity(), "an extended query not synced");
}

#[test]
fn a_length_postgres_would_refuse_is_never_at_rest() {
    let mut pg = Postgres::default();
    pg.client_sent(&[0, 0, 0, 2]);
    pg.server_sent(b"Z\0\0\0\x05I");
    assert!(!pg.at_rest());
}
