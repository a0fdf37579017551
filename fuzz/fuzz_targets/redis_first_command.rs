//! The gateway's reading of a Redis client's first command before it answers with an error:
//! `is_complete` over arbitrary bytes.
//!
//! Properties: no panic; an inline command (not starting with `*`) is complete exactly when
//! it holds a line feed; a whole RESP array followed by anything is complete.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snigate::protocol::redis::is_complete;

fuzz_target!(|data: &[u8]| {
    let complete = is_complete(data);
    if data.first() != Some(&b'*') {
        assert_eq!(complete, data.contains(&b'\n'));
    }
    // The fuzz input as the argument of a well-formed one-element array, then trailing bytes.
    let mut framed = format!("*1\r\n${}\r\n", data.len()).into_bytes();
    framed.extend_from_slice(data);
    framed.extend_from_slice(b"\r\n");
    assert!(is_complete(&framed), "a whole array counted as incomplete");
    framed.extend_from_slice(data);
    assert!(
        is_complete(&framed),
        "bytes after a whole array made it incomplete"
    );
});
