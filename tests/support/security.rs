//! Harness for the security tests (issue 4): gateway configs with every security key
//! (`conf`), certificates and CRLs issued by a test's development CA (`certs`), hand-made
//! ClientHellos (`hello`), the `refused` log line of one refusal (`logs`), snigate processes
//! with a chosen `RUST_LOG` or file limit (`process`), and a gateway whose backends count
//! every connection (`guarded`).

mod certs;
mod conf;
mod guarded;
mod hello;
mod logs;
mod process;

use std::time::Duration;

pub use certs::*;
pub use conf::*;
pub use guarded::*;
pub use hello::*;
pub use logs::*;
pub use process::*;

/// Bound for one raw network exchange.
pub const IO: Duration = Duration::from_secs(20);
