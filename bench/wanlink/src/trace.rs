//! `--trace FILE`: one line per delivery, to see which round trips a client waited for.
//! A line is `CONN DIR MS WHAT`: the connection's number, `>` (client to target) or `<`,
//! milliseconds since the link accepted the connection, and a byte count, `FIN` or `RST`.

use std::fs::File;
use std::io::{self, LineWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// The trace file, shared by all connections.
pub struct Trace {
    out: Mutex<LineWriter<File>>,
}

impl Trace {
    /// Creates (truncates) the trace file.
    pub fn create(path: &Path) -> io::Result<Trace> {
        Ok(Trace {
            out: Mutex::new(LineWriter::new(File::create(path)?)),
        })
    }
}

/// Where a direction of one connection writes its trace lines (nowhere without --trace).
#[derive(Clone, Copy)]
pub struct Tap<'a> {
    pub trace: Option<&'a Trace>,
    pub conn: u64,
    pub dir: &'static str,
    pub since: Instant,
}

impl Tap<'_> {
    /// Records one delivery.
    pub fn note(&self, what: std::fmt::Arguments) {
        if let Some(trace) = self.trace {
            let ms = self.since.elapsed().as_secs_f64() * 1000.0;
            if let Ok(mut out) = trace.out.lock() {
                // a trace that cannot be written is not worth stopping the link for
                let _ = writeln!(out, "{} {} {ms:.3} {what}", self.conn, self.dir);
            }
        }
    }
}
