//! What a relayed connection is in the middle of, so a drain can close it at a safe point.
//!
//! A tracker watches the bytes the relay forwards in both directions and says whether the
//! connection is *at rest*: every request that reached the far side has been answered to the
//! client, and no partial message is in flight either way. Closing a connection at rest loses
//! nothing: the client may send its next request on a new connection. The scanners run on
//! every chunk the relay forwards, so they keep a few words of state, skip payloads in O(1)
//! per chunk and never allocate.

mod postgres;
mod redis;
mod resp;

#[cfg(test)]
mod replay;

pub use self::postgres::Postgres;
pub use self::redis::Redis;

use crate::config::Protocol;

/// One connection's tracker, by protocol. Boxed: the connection's future holds the tracker
/// at several await points, and a pointer there costs less than copies of the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conversation {
    /// At rest when no reply is outstanding.
    Redis(Box<Redis>),
    /// At rest after ReadyForQuery `I` with nothing outstanding.
    Postgres(Box<Postgres>),
    /// A `tcp` route: its bytes mean nothing to snigate, so it is never at rest.
    Opaque,
}

impl Conversation {
    /// The tracker of a new connection speaking `protocol`.
    pub fn new(protocol: Protocol) -> Conversation {
        match protocol {
            Protocol::Redis => Conversation::Redis(Box::default()),
            Protocol::Postgres => Conversation::Postgres(Box::default()),
            Protocol::Tcp => Conversation::Opaque,
        }
    }

    /// Notes bytes the client sent, once they have been written to the far side.
    pub fn client_sent(&mut self, bytes: &[u8]) {
        match self {
            Conversation::Redis(redis) => redis.client_sent(bytes),
            Conversation::Postgres(postgres) => postgres.client_sent(bytes),
            Conversation::Opaque => {}
        }
    }

    /// Notes bytes the far side sent, once they have been written to the client.
    pub fn far_side_sent(&mut self, bytes: &[u8]) {
        match self {
            Conversation::Redis(redis) => redis.server_sent(bytes),
            Conversation::Postgres(postgres) => postgres.server_sent(bytes),
            Conversation::Opaque => {}
        }
    }

    /// Notes that the gateway's login answered the client's StartupMessage itself: the
    /// client has its ReadyForQuery (status `I`: a session starts outside a transaction).
    pub fn session_started_by_login(&mut self) {
        if let Conversation::Postgres(postgres) = self {
            postgres.server_sent(b"Z\0\0\0\x05I");
        }
    }

    /// Whether the far side's end-of-stream ends the conversation: a Redis or PostgreSQL
    /// server that closes never reads again; an opaque protocol may still be half-closed.
    pub fn over_when_far_side_closes(&self) -> bool {
        !matches!(self, Conversation::Opaque)
    }

    /// Whether closing now loses nothing.
    pub fn at_rest(&self) -> bool {
        match self {
            Conversation::Redis(redis) => redis.at_rest(),
            Conversation::Postgres(postgres) => postgres.at_rest(),
            Conversation::Opaque => false,
        }
    }

    /// What the connection is in the middle of, e.g. "a transaction open".
    pub fn activity(&self) -> &'static str {
        match self {
            Conversation::Redis(redis) => redis.activity(),
            Conversation::Postgres(postgres) => postgres.activity(),
            Conversation::Opaque => "an opaque protocol",
        }
    }
}
