//! Whether a Redis connection is at rest: every command forwarded has had its replies
//! forwarded, and no partial command or reply is in flight.
//!
//! A command expects one reply, except the pub/sub family: SUBSCRIBE, PSUBSCRIBE and
//! SSUBSCRIBE (and their UNSUBSCRIBE forms with channels) get one confirmation per channel.
//! Messages the server sends on its own are not replies: RESP3 pushes (`>`) other than those
//! confirmations, and in RESP2 subscribed mode the `message`, `pmessage` and `smessage` arrays.
//!
//! A connection with a subscription open is not at rest either: its client waits for
//! messages. Closing it first is also what stalls a Celery worker (kombu 5.7 with redis-py 8):
//! its event loop reads the subscriber connection, redis-py reconnects it in place and then
//! blocks in a read until a message comes, so the worker stops consuming. Left open, the
//! subscriber goes when the worker's BRPOP connection closes at rest and kombu reconnects
//! everything, or at the end of the drain budget.
//!
//! A connection whose one outstanding command is a blocking pop (BRPOP and kin) that has no
//! reply yet is at rest: Redis takes nothing from the list until it answers, and a client that
//! goes away unblocks it, exactly as when Redis itself restarts. Waiting for that reply
//! instead is what loses messages: it pops one while the drain closes the client's other
//! connections, and kombu, which records a popped message on another connection before
//! anything else, then finds no way to record it. What remains is the reply already on its
//! way when the drain closes the connection (on the gateway, next to Redis, a fraction of a
//! millisecond; on the sidecar, up to a round trip to the gateway).
//!
//! Known imprecisions, each erring towards "not at rest" where a request could be lost:
//! - UNSUBSCRIBE (and the P/S forms) without arguments expects one confirmation per channel
//!   subscribed as far as the confirmations seen so far tell, plus any still unconfirmed: a
//!   pipeline of SUBSCRIBE a b, UNSUBSCRIBE a, UNSUBSCRIBE (no argument) may expect more than
//!   arrive, and the connection then waits for the whole drain budget.
//! - CLIENT REPLY OFF or SKIP: the replies never come; the connection waits for the budget.
//! - RESET leaves subscribed mode without confirmations: a RESP2 reply that happens to start
//!   with "message" is then taken for a push; the connection waits for the budget.
//! - MONITOR: every monitored command is a line that looks like a reply; such a connection
//!   sends no further requests and is closed at rest like any other.

use super::resp::{Frame, Scanner};

/// Commands that subscribe, and the confirmation kinds they get: index = type of channel.
const SUBSCRIBE: [&[u8]; 3] = [b"subscribe", b"psubscribe", b"ssubscribe"];
const UNSUBSCRIBE: [&[u8]; 3] = [b"unsubscribe", b"punsubscribe", b"sunsubscribe"];
/// RESP2 arrays that are messages, not replies, once subscribed.
const MESSAGES: [&[u8]; 3] = [b"message", b"pmessage", b"smessage"];
/// Commands that block until they take something from a list or sorted set.
const BLOCKING_POPS: [&[u8]; 8] = [
    b"brpop",
    b"blpop",
    b"brpoplpush",
    b"blmove",
    b"blmpop",
    b"bzpopmin",
    b"bzpopmax",
    b"bzmpop",
];

/// The Redis conversation on one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redis {
    commands: Scanner,
    replies: Scanner,
    /// Replies expected for commands forwarded and not forwarded yet.
    outstanding: u64,
    /// The one outstanding command is a blocking pop and no reply has begun.
    blocked: bool,
    pubsub: PubSub,
}

impl Default for Redis {
    /// A connection on which nothing has been sent yet.
    fn default() -> Redis {
        Redis {
            commands: Scanner::new(true),
            replies: Scanner::new(false),
            outstanding: 0,
            blocked: false,
            pubsub: PubSub::default(),
        }
    }
}

impl Redis {
    /// Bytes the client sent, as forwarded to the server.
    pub fn client_sent(&mut self, bytes: &[u8]) {
        let (pubsub, outstanding) = (&mut self.pubsub, &mut self.outstanding);
        let blocked = &mut self.blocked;
        self.commands.feed(bytes, |frame| {
            let pop = frame
                .word()
                .is_some_and(|w| BLOCKING_POPS.iter().any(|b| b.eq_ignore_ascii_case(w)));
            *blocked = *outstanding == 0 && pop;
            *outstanding = outstanding.saturating_add(pubsub.replies_expected(frame));
        });
    }

    /// Bytes the server sent, as forwarded to the client.
    pub fn server_sent(&mut self, bytes: &[u8]) {
        let (pubsub, outstanding) = (&mut self.pubsub, &mut self.outstanding);
        self.replies.feed(bytes, |frame| {
            if pubsub.is_reply(frame) {
                *outstanding = outstanding.saturating_sub(1);
            }
        });
    }

    /// Nothing outstanding but a blocking pop still waiting, and nothing partial either way.
    pub fn at_rest(&self) -> bool {
        (self.outstanding == 0 || self.blocked && self.outstanding == 1)
            && self.commands.at_boundary()
            && self.replies.at_boundary()
            && !self.pubsub.subscribed()
    }

    /// What the connection is in the middle of, for the log line of a connection cut.
    pub fn activity(&self) -> &'static str {
        if !self.commands.at_boundary() {
            "a partial command"
        } else if !self.replies.at_boundary() {
            "a partial reply"
        } else if self.outstanding > 0 {
            "replies outstanding"
        } else if self.pubsub.subscribed() {
            "a subscription open"
        } else {
            "nothing"
        }
    }
}

/// What the connection's subscriptions are, as far as its commands and confirmations tell.
/// Indexes: channels, patterns, shard channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PubSub {
    /// Whether the client ever sent a pub/sub command: only then can an array be a
    /// confirmation or a message.
    used: bool,
    /// Subscriptions confirmed.
    active: [u64; 3],
    /// Channels named in subscribe commands forwarded and not confirmed yet.
    unconfirmed: [u64; 3],
    /// The last count of channels plus patterns a confirmation gave (shard channels are
    /// counted apart), to tell which kind a confirmation added or removed.
    last_count: i64,
}

impl PubSub {
    /// How many replies a complete command expects.
    fn replies_expected(&mut self, frame: &Frame) -> u64 {
        let args = frame.len.max(0) as u64;
        if args == 0 {
            // An empty inline line or `*0`: Redis answers nothing.
            return 0;
        }
        let name = frame.word().unwrap_or_default();
        if !(9..=12).contains(&name.len()) {
            // Shorter or longer than any (un)subscribe command: the common case, decided fast.
            return 1;
        }
        let channels = args - 1;
        if let Some(kind) = position(&SUBSCRIBE, name) {
            self.used = true;
            self.unconfirmed[kind] += channels;
            return channels.max(1);
        }
        match position(&UNSUBSCRIBE, name) {
            Some(_) if channels > 0 => {
                self.used = true;
                channels
            }
            Some(kind) => {
                self.used = true;
                (self.active[kind] + self.unconfirmed[kind]).max(1)
            }
            None => 1,
        }
    }

    /// Whether a subscription is open, or asked for and not confirmed yet.
    fn subscribed(&self) -> bool {
        self.active.iter().chain(&self.unconfirmed).any(|&n| n > 0)
    }

    /// Whether a complete frame from the server answers a command (or is a push).
    fn is_reply(&mut self, frame: &Frame) -> bool {
        let (push, array) = (frame.kind == b'>', frame.kind == b'*');
        if !(push || array && self.used) {
            return true;
        }
        let word = frame.word().unwrap_or_default();
        if let (3, Some(count)) = (frame.len, frame.third) {
            if let Some(kind) = position(&SUBSCRIBE, word) {
                self.confirm(kind, count, true);
                return true;
            }
            if let Some(kind) = position(&UNSUBSCRIBE, word) {
                self.confirm(kind, count, false);
                return true;
            }
        }
        let subscribed = self.active.iter().any(|&n| n > 0);
        let message = matches!(frame.len, 3 | 4) && position(&MESSAGES, word).is_some();
        !(push || subscribed && message)
    }

    fn confirm(&mut self, kind: usize, count: i64, subscribing: bool) {
        if subscribing {
            self.unconfirmed[kind] = self.unconfirmed[kind].saturating_sub(1);
        }
        if kind == 2 {
            self.active[2] = count.max(0) as u64;
            return;
        }
        let delta = count - self.last_count;
        self.last_count = count;
        if subscribing && delta > 0 {
            self.active[kind] += 1;
        } else if !subscribing && delta < 0 {
            self.active[kind] = self.active[kind].saturating_sub(1);
        }
    }
}

fn position(words: &[&[u8]; 3], name: &[u8]) -> Option<usize> {
    words.iter().position(|w| w.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests;
