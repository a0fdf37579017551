//! What the gateway does with the client's own authentication on a Redis login route: the
//! client's log-in is replaced by the gateway's, a later switch to another user is refused.

use bytes::BytesMut;

use super::redis_commands::push_command;
use super::Password;

/// Who the gateway logs in as and how it answers the client's own authentication.
pub struct Policy {
    /// ACL user; `None`: `default`, with the one-argument AUTH (which Redis < 6 also knows).
    user: Option<String>,
    /// The password that worked for this connection.
    password: Password,
    /// The command sent instead of a refused AUTH; its reply is replaced by the refusal.
    placeholder: Vec<u8>,
    /// Until the client's first other command, any AUTH is the client's log-in, replaced by
    /// the gateway's; after it, an AUTH naming another user would switch users and is refused.
    logging_in: bool,
    refused: usize,
}

impl Policy {
    /// The policy of one connection logged in as `user` with `password`.
    pub fn new(user: Option<String>, password: Password, placeholder: Vec<u8>) -> Policy {
        Policy {
            user,
            password,
            placeholder,
            logging_in: true,
            refused: 0,
        }
    }

    /// Placeholders sent since the last call.
    pub fn take_refused(&mut self) -> usize {
        std::mem::take(&mut self.refused)
    }

    /// The client sent a command other than AUTH, HELLO and RESET: its log-in is over.
    pub fn ordinary(&mut self) {
        self.logging_in = false;
    }

    /// A whole command the framer held back: rewritten, refused, or sent as it came
    /// (`held`).
    pub fn command(&mut self, args: &[Vec<u8>], held: &[u8], out: &mut BytesMut) {
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_slice() {
            b"AUTH" => self.auth(args, out),
            b"HELLO" => self.hello(args, held, out),
            b"RESET" => {
                // RESET logs the connection out: the client's next AUTH is its log-in again.
                self.logging_in = true;
                out.extend_from_slice(held);
            }
            b"" => out.extend_from_slice(held),
            _ => {
                self.ordinary();
                out.extend_from_slice(held);
            }
        }
    }

    fn auth(&mut self, args: &[Vec<u8>], out: &mut BytesMut) {
        let user: &[u8] = match args.len() {
            2 => b"default",
            3 => &args[1],
            _ => return self.refuse(out),
        };
        if self.may_log_in_as(user) {
            self.log_in(out);
        } else {
            self.refuse(out);
        }
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`, read as Redis reads it; sent on
    /// without its AUTH (the connection is already logged in).
    fn hello(&mut self, args: &[Vec<u8>], held: &[u8], out: &mut BytesMut) {
        if args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"AUTH")) {
            // No protocol version: Redis would refuse it, but the credentials must not go.
            return self.refuse(out);
        }
        let mut kept: Vec<&[u8]> = args.iter().take(2).map(Vec::as_slice).collect();
        let mut user = None;
        let mut j = 2;
        while j < args.len() {
            let more = args.len() - 1 - j;
            if args[j].eq_ignore_ascii_case(b"AUTH") {
                if more < 2 {
                    return self.refuse(out);
                }
                user = Some(args[j + 1].as_slice());
                j += 3;
            } else {
                kept.push(&args[j]);
                j += 1;
            }
        }
        match user {
            None => out.extend_from_slice(held),
            Some(user) if self.may_log_in_as(user) => push_command(out, &kept),
            Some(_) => self.refuse(out),
        }
    }

    fn may_log_in_as(&self, user: &[u8]) -> bool {
        let ours = self.user.as_deref().unwrap_or("default");
        self.logging_in || user == ours.as_bytes()
    }

    fn log_in(&mut self, out: &mut BytesMut) {
        let password = self.password.expose();
        match &self.user {
            Some(user) => push_command(out, &[b"AUTH", user.as_bytes(), password]),
            None => push_command(out, &[b"AUTH", password]),
        }
    }

    fn refuse(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.placeholder);
        self.refused += 1;
    }
}
