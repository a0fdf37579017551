//! A streaming RESP scanner: finds where each top-level frame (RESP2 or RESP3) ends, however
//! the bytes are chunked, and keeps the little the Redis tracker needs to know about it.
//!
//! Hand-written because redis-protocol's decoders need a whole frame in one buffer, while the
//! relay forwards bytes as they arrive (a 64 KiB value comes in many reads) and must neither
//! copy nor hold them. This scanner keeps a few words of state, skips a bulk payload in O(1)
//! per chunk and allocates nothing. Nesting needs no stack: a frame is a count of values still
//! to read, and an aggregate header adds its elements to that count.

mod frame;
mod whole;

pub use frame::Frame;
use frame::WORD;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// The type byte of the next value.
    Type,
    /// The decimal after a type byte, up to the end of its line.
    Number(Value),
    /// The rest of a simple line (`+`, `-`, `,`...).
    Line,
    /// Bulk payload bytes (and their CRLF) still to pass.
    Payload(u64),
    /// An inline command: words up to the end of the line.
    Inline { in_word: bool },
    /// Not RESP: nothing after this point can be understood.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Blob,
    Integer,
    /// An aggregate of this many values per element (2 for maps).
    Aggregate(u64),
    /// Attribute pairs, which do not count as a value themselves.
    Attribute,
}

/// One direction's scanner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanner {
    at: At,
    /// Whether this side sends commands: a frame may then be an inline command, and an
    /// array may hold only bulk strings.
    commands: bool,
    /// Values still to read before the current top-level frame is complete; 0 between frames.
    remaining: u64,
    number: i64,
    negative: bool,
    /// The number being read is the header of the top-level value.
    top_header: bool,
    /// Whether the top-level aggregate has held only scalars so far (element indexes known).
    flat: bool,
    /// Payload bytes of the current bulk string still to copy into the frame's word.
    capture: u8,
    frame: Frame,
}

impl Scanner {
    /// A scanner of commands (`commands`) or of replies.
    pub fn new(commands: bool) -> Scanner {
        Scanner {
            at: At::Type,
            commands,
            remaining: 0,
            number: 0,
            negative: false,
            top_header: false,
            flat: true,
            capture: 0,
            frame: Frame::default(),
        }
    }

    /// Between frames: nothing partial in flight.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.at == At::Type
    }

    /// Reads `bytes`, calling `done` with each top-level frame completed in them.
    pub fn feed(&mut self, bytes: &[u8], mut done: impl FnMut(&Frame)) {
        let mut i = 0;
        while i < bytes.len() {
            match self.at {
                At::Payload(left) => {
                    let take = left.min((bytes.len() - i) as u64) as usize;
                    if self.capture > 0 {
                        let keep = take.min(self.capture as usize);
                        self.frame.push_word(&bytes[i..i + keep]);
                        self.capture -= keep as u8;
                    }
                    i += take;
                    self.at = At::Payload(left - take as u64);
                    if left == take as u64 {
                        self.end_value(&mut done);
                    }
                }
                At::Line => match bytes[i..].iter().position(|&b| b == b'\n') {
                    Some(n) => {
                        i += n + 1;
                        self.end_value(&mut done);
                    }
                    None => i = bytes.len(),
                },
                At::Type if self.remaining == 0 => match whole::frame(&bytes[i..], self.commands) {
                    Some((frame, used)) => {
                        i += used;
                        (self.frame, self.flat) = (frame, true);
                        done(&self.frame);
                    }
                    None => {
                        self.start_value(bytes[i], &mut done);
                        i += 1;
                    }
                },
                At::Type => {
                    self.start_value(bytes[i], &mut done);
                    i += 1;
                }
                At::Number(value) => i += self.number_line(&bytes[i..], value, &mut done),
                At::Inline { in_word } => {
                    self.inline(bytes[i], in_word, &mut done);
                    i += 1;
                }
                At::Lost => return,
            }
        }
    }

    fn start_value(&mut self, byte: u8, done: &mut impl FnMut(&Frame)) {
        if self.remaining == 0 {
            self.remaining = 1;
            self.flat = true;
            self.frame = Frame::default();
            if self.commands && byte != b'*' {
                // Redis reads anything that does not start with `*` as an inline command.
                self.frame.kind = b'*';
                return self.inline(byte, false, done);
            }
        }
        // With the kind unset, one value left is the top-level one (after any attribute).
        let top = self.frame.kind == 0 && self.remaining == 1 && byte != b'|';
        if top {
            self.frame.kind = byte;
        } else if self.frame.kind != 0 {
            if self.commands && byte != b'$' {
                // Redis closes a connection that sends anything else inside a command.
                self.at = At::Lost;
                return;
            }
            let index = self.frame.len - self.remaining as i64;
            self.frame.has_word |= byte == b'$' && self.flat && index == 0;
            self.flat &= !matches!(byte, b'*' | b'%' | b'~' | b'>' | b'|');
        }
        self.top_header = top;
        self.at = match byte {
            b'$' | b'!' | b'=' => At::Number(Value::Blob),
            b':' => At::Number(Value::Integer),
            b'*' | b'~' | b'>' => At::Number(Value::Aggregate(1)),
            b'%' => At::Number(Value::Aggregate(2)),
            b'|' => At::Number(Value::Attribute),
            b'+' | b'-' | b'_' | b'#' | b',' | b'(' => At::Line,
            _ => At::Lost,
        };
    }

    /// Reads a number's line, the whole line at once when it is in this chunk: headers are
    /// most of the bytes scanned, and a tight loop keeps the data path fast. Returns the
    /// bytes read.
    fn number_line(&mut self, rest: &[u8], value: Value, done: &mut impl FnMut(&Frame)) -> usize {
        let end = rest.iter().position(|&b| b == b'\n');
        let line = &rest[..end.unwrap_or(rest.len())];
        if !self.digits(line) {
            self.at = At::Lost;
        } else if end.is_some() {
            let n = if self.negative {
                -self.number
            } else {
                self.number
            };
            (self.number, self.negative) = (0, false);
            self.end_number(n, value, done);
        }
        line.len() + usize::from(end.is_some())
    }

    /// Adds the characters of a number's line (without its `\n`) to the number so far;
    /// `false` when one is not part of a number.
    fn digits(&mut self, line: &[u8]) -> bool {
        let (mut number, mut negative) = (self.number, self.negative);
        for &byte in line {
            match byte {
                b'0'..=b'9' => {
                    let d = i64::from(byte - b'0');
                    number = number.saturating_mul(10).saturating_add(d);
                }
                b'-' if number == 0 => negative = true,
                b'\r' => {}
                _ => return false,
            }
        }
        (self.number, self.negative) = (number, negative);
        true
    }

    fn end_number(&mut self, n: i64, value: Value, done: &mut impl FnMut(&Frame)) {
        let index = self.frame.len - self.remaining as i64;
        match value {
            Value::Blob if n >= 0 => {
                let first = self.frame.has_word && self.frame.word_len == 0 && index == 0;
                if first && n as usize > WORD {
                    self.frame.word_len = u8::MAX;
                }
                self.capture = if first && n as usize <= WORD {
                    n as u8
                } else {
                    0
                };
                self.at = At::Payload(n as u64 + 2);
            }
            Value::Blob => self.end_value(done),
            Value::Integer => {
                if self.flat && !self.top_header && index == 2 {
                    self.frame.third = Some(n);
                }
                self.end_value(done);
            }
            Value::Aggregate(per) => {
                if self.top_header {
                    self.frame.len = n;
                }
                let elements = (n.max(0) as u64).saturating_mul(per);
                self.remaining = self.remaining.saturating_add(elements);
                self.end_value(done);
            }
            Value::Attribute => {
                let elements = (n.max(0) as u64).saturating_mul(2);
                self.remaining = self.remaining.saturating_add(elements);
                self.at = At::Type;
            }
        }
    }

    fn end_value(&mut self, done: &mut impl FnMut(&Frame)) {
        self.at = At::Type;
        self.top_header = false;
        self.remaining -= 1;
        if self.remaining == 0 {
            done(&self.frame);
        }
    }

    fn inline(&mut self, byte: u8, in_word: bool, done: &mut impl FnMut(&Frame)) {
        let word_ends = in_word && matches!(byte, b'\n' | b' ' | b'\t' | b'\r');
        self.frame.len += i64::from(word_ends);
        self.at = match byte {
            b'\n' => {
                self.remaining = 0;
                done(&self.frame);
                At::Type
            }
            b' ' | b'\t' | b'\r' => At::Inline { in_word: false },
            _ => {
                if self.frame.len == 0 {
                    self.frame.has_word = true;
                    self.frame.push_word(&[byte]);
                }
                At::Inline { in_word: true }
            }
        };
    }
}
