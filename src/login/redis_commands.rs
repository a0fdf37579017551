//! Framing of the client → Redis command stream on a login route, so that no AUTH and no
//! HELLO … AUTH of the client reaches Redis: each is rewritten to the gateway's credentials,
//! or, when it would switch to another user, replaced by a placeholder whose reply becomes
//! the refusal (see `redis_replies`).
//!
//! A small hand-written state machine rather than redis-protocol's decoder: that decoder
//! needs whole frames, and a 500 MB SET must stream through without being buffered. Only a
//! command's first argument is held back (to see its name); the whole command is held only
//! for AUTH, HELLO and RESET, which are small, and then decoded with redis-protocol. The
//! framing follows Redis' own parser (`processMultibulkBuffer`, `processInlineBuffer`): the
//! same lengths, the same inline splitting; what Redis would reject as a protocol error
//! closes the connection here, so the two can never disagree about where a command starts.

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

use super::redis_inline::split_args;
use super::redis_policy::Policy;

/// Redis' own limit for an inline command, and ours for a held AUTH/HELLO/RESET.
const MAX_HELD: usize = 64 * 1024;

/// Where the scanner is in the command stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    CommandStart,
    Inline,
    Count(Number),
    ArgMarker,
    ArgLen(Number),
    /// Bytes of the current argument's data still to come.
    ArgData(u64),
    /// The CRLF after an argument; `true` once the CR has been seen.
    ArgEnd(bool),
}

/// A decimal line in the making, parsed the way Redis' `string2ll` does (no `+`, no leading
/// zeros, `-` only where allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Number {
    value: i64,
    digits: u32,
    negative: bool,
    cr: bool,
}

/// What became of the bytes offered to [`Commands::scan`].
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The first n bytes belong to an ordinary command: write them to the server as they are,
    /// then report how many were written with [`Commands::passed`].
    Pass(usize),
    /// The first n bytes were taken; what they complete is in `out`.
    Took(usize),
}

/// A protocol error: the connection is closed, as Redis would close it.
#[derive(Debug, thiserror::Error)]
#[error("Redis protocol error in a client command: {0}")]
pub struct ProtocolError(pub &'static str);

/// The scanner of one connection's commands.
pub struct Commands {
    policy: Policy,
    expect: Expect,
    /// Whether the current command is being held back (its name is not known yet, or it is
    /// one the gateway rewrites).
    holding: bool,
    held: Vec<u8>,
    args_left: i64,
    arg_index: u64,
    arg_start: usize,
}

impl Commands {
    /// A scanner at the start of a connection.
    pub fn new(policy: Policy) -> Commands {
        Commands {
            policy,
            expect: Expect::CommandStart,
            holding: true,
            held: Vec::new(),
            args_left: 0,
            arg_index: 0,
            arg_start: 0,
        }
    }

    /// Placeholders sent since the last call: each will come back as one reply to replace.
    pub fn take_refused(&mut self) -> usize {
        self.policy.take_refused()
    }

    /// Looks at `input` (not empty); appends to `out` whatever the server should get in place
    /// of the bytes taken.
    pub fn scan(&mut self, input: &[u8], out: &mut BytesMut) -> Result<Step, ProtocolError> {
        if let (false, Expect::ArgData(left)) = (self.holding, self.expect) {
            return Ok(Step::Pass(
                usize::try_from(left).unwrap_or(usize::MAX).min(input.len()),
            ));
        }
        let mut i = 0;
        while i < input.len() {
            if let Expect::ArgData(left) = self.expect {
                if !self.holding {
                    break;
                }
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                self.hold(&input[i..i + n])?;
                i += n;
                self.data_taken(n as u64);
            } else {
                self.byte(input[i], out)?;
                i += 1;
            }
        }
        Ok(Step::Took(i))
    }

    /// `n` bytes of a [`Step::Pass`] were written to the server.
    pub fn passed(&mut self, n: usize) {
        if let Expect::ArgData(left) = self.expect {
            self.expect = if left == n as u64 {
                Expect::ArgEnd(false)
            } else {
                Expect::ArgData(left - n as u64)
            };
        }
    }

    fn hold(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.held.extend_from_slice(bytes);
        if self.held.len() > MAX_HELD {
            return Err(ProtocolError("command too large for AUTH, HELLO or RESET"));
        }
        Ok(())
    }

    fn emit(&mut self, byte: u8, out: &mut BytesMut) -> Result<(), ProtocolError> {
        if self.holding {
            self.hold(&[byte])
        } else {
            out.extend_from_slice(&[byte]);
            Ok(())
        }
    }

    fn byte(&mut self, b: u8, out: &mut BytesMut) -> Result<(), ProtocolError> {
        self.emit(b, out)?;
        self.expect = match self.expect {
            Expect::CommandStart if b == b'*' => Expect::Count(Number::default()),
            Expect::CommandStart | Expect::Inline if b == b'\n' => return self.inline_end(out),
            Expect::CommandStart | Expect::Inline if b == 0 => {
                return Err(ProtocolError("NUL in an inline command"))
            }
            Expect::CommandStart | Expect::Inline => Expect::Inline,
            Expect::Count(n) => match n.feed(b, true)? {
                Some(count) if count <= 0 => return self.command_end(out),
                Some(count) => {
                    self.args_left = count;
                    self.arg_index = 0;
                    Expect::ArgMarker
                }
                None => Expect::Count(n.next(b)),
            },
            Expect::ArgMarker if b == b'$' => Expect::ArgLen(Number::default()),
            Expect::ArgMarker => return Err(ProtocolError("expected '$'")),
            Expect::ArgLen(n) => match n.feed(b, false)? {
                Some(len) => return self.arg_len(len as u64, out),
                None => Expect::ArgLen(n.next(b)),
            },
            Expect::ArgEnd(false) if b == b'\r' => Expect::ArgEnd(true),
            Expect::ArgEnd(true) if b == b'\n' => return self.arg_end(out),
            Expect::ArgEnd(_) => return Err(ProtocolError("argument not followed by CRLF")),
            Expect::ArgData(_) => unreachable!("argument data is taken in bulk"),
        };
        Ok(())
    }

    /// The first argument's length decides: only 4 (AUTH) and 5 (HELLO, RESET) letters can
    /// name a command the gateway rewrites; anything else starts passing through at once.
    fn arg_len(&mut self, len: u64, out: &mut BytesMut) -> Result<(), ProtocolError> {
        if self.arg_index == 0 {
            if self.holding && len != 4 && len != 5 {
                self.release(out);
            }
            self.arg_start = self.held.len();
        }
        self.expect = Expect::ArgData(len);
        self.data_taken(0);
        Ok(())
    }

    fn data_taken(&mut self, n: u64) {
        if let Expect::ArgData(left) = self.expect {
            self.expect = match left - n {
                0 => Expect::ArgEnd(false),
                rest => Expect::ArgData(rest),
            };
        }
    }

    fn arg_end(&mut self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        if self.arg_index == 0 && self.holding {
            let name = &self.held[self.arg_start..self.held.len() - 2];
            if !is_rewritten(name) {
                self.release(out);
            }
        }
        self.arg_index += 1;
        self.args_left -= 1;
        if self.args_left == 0 {
            return self.command_end(out);
        }
        self.expect = Expect::ArgMarker;
        Ok(())
    }

    /// Sends what was held back: the command is an ordinary one, and it ends the log-in.
    fn release(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.held);
        self.held.clear();
        self.holding = false;
        self.policy.ordinary();
    }

    fn inline_end(&mut self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        let line = self.held.strip_suffix(b"\n").unwrap_or(&self.held);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let args =
            split_args(line).ok_or(ProtocolError("unbalanced quotes in an inline command"))?;
        self.finish(args, out);
        Ok(())
    }

    fn finish(&mut self, args: Vec<Vec<u8>>, out: &mut BytesMut) {
        let held = std::mem::take(&mut self.held);
        self.policy.command(&args, &held, out);
        self.holding = true;
        self.expect = Expect::CommandStart;
    }

    fn command_end(&mut self, out: &mut BytesMut) -> Result<(), ProtocolError> {
        if self.holding {
            let args = match decode(&self.held) {
                Ok(Some((OwnedFrame::Array(frames), _))) => frames
                    .into_iter()
                    .map(|f| match f {
                        OwnedFrame::BulkString(arg) => arg,
                        _ => Vec::new(),
                    })
                    .collect(),
                Ok(Some((OwnedFrame::Null, _))) => Vec::new(),
                _ => return Err(ProtocolError("a held command does not decode")),
            };
            self.finish(args, out);
        }
        self.holding = true;
        self.expect = Expect::CommandStart;
        Ok(())
    }
}

/// The commands whose whole text the policy must see.
fn is_rewritten(name: &[u8]) -> bool {
    [&b"AUTH"[..], b"HELLO", b"RESET"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// Appends a command as a RESP array of bulk strings.
pub fn push_command(out: &mut BytesMut, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

impl Number {
    /// Feeds one byte; `Some(value)` once the line's LF has arrived.
    fn feed(self, b: u8, signed: bool) -> Result<Option<i64>, ProtocolError> {
        let bad = Err(ProtocolError("invalid length"));
        match b {
            b'\n' if self.cr && self.digits > 0 => Ok(Some(if self.negative {
                -self.value
            } else {
                self.value
            })),
            _ if self.cr => bad,
            b'\r' if self.digits > 0 => Ok(None),
            b'-' if signed && self.digits == 0 && !self.negative => Ok(None),
            b'0'..=b'9' if self.digits > 0 && self.value == 0 => bad,
            b'0'..=b'9' if self.digits >= 18 => bad,
            b'0'..=b'9' if b == b'0' && self.negative => bad,
            b'0'..=b'9' => Ok(None),
            _ => bad,
        }
    }

    /// The state after `b`, which [`Number::feed`] accepted without finishing the line.
    fn next(mut self, b: u8) -> Number {
        match b {
            b'\r' => self.cr = true,
            b'-' => self.negative = true,
            digit => {
                self.value = self.value * 10 + i64::from(digit - b'0');
                self.digits += 1;
            }
        }
        self
    }
}

#[cfg(test)]
#[path = "redis_commands_tests.rs"]
mod tests;
