//! Whether a PostgreSQL connection is at rest: the session has started, every Query, Sync and
//! FunctionCall forwarded has been answered by its ReadyForQuery, no extended-protocol message
//! waits for its Sync, the last ReadyForQuery said `I` (no transaction open), and no partial
//! message is in flight either way.
//!
//! Messages are framed by their length, so a body is skipped in O(1) per chunk whatever its
//! size (a COPY row, a 1 GB bytea). Messages the server sends on its own (NoticeResponse,
//! NotificationResponse, ParameterStatus) are skipped like any other.

/// The framing of one direction: a type byte (not on the first packet a client sends: the
/// StartupMessage or CancelRequest) and a length that counts itself.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Framing {
    /// Whether messages carry a type byte (after the client's first packet).
    typed: bool,
    header: [u8; 5],
    /// Header bytes read of the current message.
    got: u8,
    /// Body bytes still to pass; `None` while reading the header.
    body: Option<u32>,
    /// The body is a single byte (kept for `done`).
    single: bool,
    /// Not PostgreSQL (a length below 4): nothing after this point can be understood.
    lost: bool,
}

impl Framing {
    fn new(typed: bool) -> Framing {
        Framing {
            typed,
            header: [0; 5],
            got: 0,
            body: None,
            single: false,
            lost: false,
        }
    }

    fn at_boundary(&self) -> bool {
        self.got == 0 && self.body.is_none() && !self.lost
    }

    /// Reads `bytes`, calling `done(type, byte)` for each message completed; `byte` is the
    /// body when it is a single byte (ReadyForQuery's transaction status).
    fn feed(&mut self, bytes: &[u8], mut done: impl FnMut(u8, Option<u8>)) {
        let mut i = 0;
        while i < bytes.len() && !self.lost {
            let Some(left) = self.body else {
                // A whole header at once when it is in this chunk, as it mostly is.
                let size = if self.typed { 5 } else { 4 };
                let take = if self.got == 0 && bytes.len() - i >= size {
                    size
                } else {
                    1
                };
                let got = self.got as usize;
                self.header[got..got + take].copy_from_slice(&bytes[i..i + take]);
                self.got += take as u8;
                i += take;
                self.end_header(&mut done);
                continue;
            };
            let take = (left as usize).min(bytes.len() - i);
            let byte = (self.single && take == 1).then(|| bytes[i]);
            i += take;
            self.body = Some(left - take as u32);
            if left as usize == take {
                self.finish(&mut done, byte);
            }
        }
    }

    fn end_header(&mut self, done: &mut impl FnMut(u8, Option<u8>)) {
        let size = if self.typed { 5 } else { 4 };
        if (self.got as usize) < size {
            return;
        }
        let at = size - 4;
        let len = u32::from_be_bytes([
            self.header[at],
            self.header[at + 1],
            self.header[at + 2],
            self.header[at + 3],
        ]);
        if len < 4 {
            self.lost = true;
            return;
        }
        let kind = if self.typed { self.header[0] } else { 0 };
        self.header[0] = kind;
        (self.got, self.body, self.single) = (0, Some(len - 4), len == 5);
        if len == 4 {
            self.finish(done, None);
        }
    }

    fn finish(&mut self, done: &mut impl FnMut(u8, Option<u8>), byte: Option<u8>) {
        (self.body, self.typed) = (None, true);
        done(self.header[0], byte);
    }
}

/// The PostgreSQL conversation on one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Postgres {
    frontend: Framing,
    backend: Framing,
    /// The first ReadyForQuery has been forwarded: the session is up.
    started: bool,
    /// Query, Sync and FunctionCall messages forwarded whose ReadyForQuery has not been.
    awaiting: u32,
    /// An extended-protocol message has been forwarded since the last Sync.
    unsynced: bool,
    /// The transaction status of the last ReadyForQuery: `I`, `T` or `E`.
    status: u8,
}

impl Default for Postgres {
    /// A connection whose client has not sent its StartupMessage yet.
    fn default() -> Postgres {
        Postgres {
            frontend: Framing::new(false),
            backend: Framing::new(true),
            started: false,
            awaiting: 0,
            unsynced: false,
            status: 0,
        }
    }
}

impl Postgres {
    /// Bytes the client sent, as forwarded to the server.
    pub fn client_sent(&mut self, bytes: &[u8]) {
        let (awaiting, unsynced) = (&mut self.awaiting, &mut self.unsynced);
        self.frontend.feed(bytes, |kind, _| match kind {
            b'Q' | b'F' => *awaiting = awaiting.saturating_add(1),
            b'S' => {
                *awaiting = awaiting.saturating_add(1);
                *unsynced = false;
            }
            // Parse, Bind, Describe, Execute, Close: answered in full only after a Sync. A
            // Flush alone asks for nothing (psycopg sends one after its pipeline's Sync).
            b'P' | b'B' | b'D' | b'E' | b'C' => *unsynced = true,
            _ => {}
        });
    }

    /// Bytes the server sent, as forwarded to the client.
    pub fn server_sent(&mut self, bytes: &[u8]) {
        let (started, awaiting, status) = (&mut self.started, &mut self.awaiting, &mut self.status);
        self.backend.feed(bytes, |kind, byte| {
            if kind != b'Z' {
                return;
            }
            if *started {
                *awaiting = awaiting.saturating_sub(1);
            }
            *started = true;
            *status = byte.unwrap_or(0);
        });
    }

    /// Idle outside a transaction, nothing outstanding, nothing partial either way.
    pub fn at_rest(&self) -> bool {
        self.started
            && self.awaiting == 0
            && !self.unsynced
            && self.status == b'I'
            && self.frontend.at_boundary()
            && self.backend.at_boundary()
    }

    /// What the connection is in the middle of, for the log line of a connection cut.
    pub fn activity(&self) -> &'static str {
        if !self.frontend.at_boundary() {
            "a partial message from the client"
        } else if !self.backend.at_boundary() {
            "a partial message from the server"
        } else if !self.started {
            "the session's startup"
        } else if self.awaiting > 0 {
            "a query running"
        } else if self.unsynced {
            "an extended query not synced"
        } else if self.status == b'T' {
            "a transaction open"
        } else if self.status == b'E' {
            "a failed transaction open"
        } else {
            "nothing"
        }
    }
}

#[cfg(test)]
mod tests;
