//! The server → client side of a Redis login session: the reply to each placeholder sent for
//! a refused AUTH is replaced by the refusal, in its place among the other replies.
//!
//! The placeholder is `ECHO <nonce>`, whose reply is the bulk string `$32\r\n<nonce>\r\n`;
//! the nonce is random per connection and never reaches the client, so no reply the client
//! provoked can contain it. Replies pass untouched (not even scanned) while no placeholder
//! is outstanding. Redis answers the ECHO with an error instead when the ACL user may not
//! run it or in RESP2 subscribed mode; the client then gets that error, and the AUTH still
//! never reached Redis.

use bytes::{Buf, BytesMut};
use memchr::memmem;

use super::redis_commands::push_command;

/// Finds placeholder replies in the server's byte stream.
pub struct Replies {
    /// The placeholder's reply, as Redis sends it.
    reply: Vec<u8>,
    /// What the client gets instead.
    refusal: Vec<u8>,
    outstanding: usize,
    /// Read from the server, not yet released: may end with the start of a placeholder reply.
    unsure: BytesMut,
    /// Released, waiting for the client.
    pub ready: BytesMut,
}

impl Replies {
    /// For one connection: the `ECHO` command to send as placeholder, and the scanner of
    /// its replies that replaces each with `refusal`.
    pub fn new(nonce: &[u8], refusal: Vec<u8>) -> (Vec<u8>, Replies) {
        let mut command = BytesMut::new();
        push_command(&mut command, &[b"ECHO", nonce]);
        let mut reply = format!("${}\r\n", nonce.len()).into_bytes();
        reply.extend_from_slice(nonce);
        reply.extend_from_slice(b"\r\n");
        let replies = Replies {
            reply,
            refusal,
            outstanding: 0,
            unsure: BytesMut::new(),
            ready: BytesMut::new(),
        };
        (command.to_vec(), replies)
    }

    /// `n` more placeholders were sent.
    pub fn expect(&mut self, n: usize) {
        self.outstanding += n;
    }

    /// Whether server bytes must go through [`Replies::feed`].
    pub fn active(&self) -> bool {
        self.outstanding > 0 || !self.unsure.is_empty() || !self.ready.is_empty()
    }

    /// Takes bytes read from the server; releases to `ready` all that cannot be part of a
    /// placeholder reply, with each placeholder reply replaced.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.unsure.extend_from_slice(bytes);
        while self.outstanding > 0 {
            match memmem::find(&self.unsure, &self.reply) {
                Some(at) => {
                    self.ready.extend_from_slice(&self.unsure.split_to(at));
                    self.unsure.advance(self.reply.len());
                    self.ready.extend_from_slice(&self.refusal);
                    self.outstanding -= 1;
                }
                None => {
                    let keep = self.partial_at_end();
                    let sure = self.unsure.len() - keep;
                    self.ready.extend_from_slice(&self.unsure.split_to(sure));
                    return;
                }
            }
        }
        self.ready.extend_from_slice(&self.unsure.split());
    }

    /// The server closed: what was held back was not a placeholder reply after all.
    pub fn finish(&mut self) {
        self.ready.extend_from_slice(&self.unsure.split());
    }

    /// Length of the longest end of `unsure` that begins a placeholder reply.
    fn partial_at_end(&self) -> usize {
        let longest = self.unsure.len().min(self.reply.len() - 1);
        (1..=longest)
            .rev()
            .find(|&k| self.unsure[self.unsure.len() - k..] == self.reply[..k])
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_replies_are_replaced_in_place_at_every_split() {
        let (command, _) = Replies::new(b"n0nce", b"-ERR no\r\n".to_vec());
        assert_eq!(command, b"*2\r\n$4\r\nECHO\r\n$5\r\nn0nce\r\n");
        let stream = b"+OK\r\n$5\r\nn0nce\r\n:1\r\n$5\r\nn0nc\r\n$5\r\nn0nce\r\n+PONG\r\n";
        let want = b"+OK\r\n-ERR no\r\n:1\r\n$5\r\nn0nc\r\n-ERR no\r\n+PONG\r\n";
        for cut in 0..stream.len() {
            let (_, mut r) = Replies::new(b"n0nce", b"-ERR no\r\n".to_vec());
            r.expect(2);
            r.feed(&stream[..cut]);
            r.feed(&stream[cut..]);
            r.finish();
            assert_eq!(&r.ready[..], &want[..], "split at {cut}");
            assert!(r.outstanding == 0);
        }
    }

    #[test]
    fn nothing_is_held_back_while_no_placeholder_is_outstanding() {
        let (_, mut r) = Replies::new(b"n0nce", b"-ERR no\r\n".to_vec());
        r.expect(1);
        r.feed(b"+OK\r\n$5\r\nn0");
        assert_eq!(&r.ready[..], b"+OK\r\n");
        r.feed(b"X\r\n");
        assert_eq!(&r.ready[..], b"+OK\r\n$5\r\nn0X\r\n");
        assert!(r.active(), "still waiting for the placeholder's reply");
    }
}
