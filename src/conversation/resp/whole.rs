//! The fast path of the RESP scanner: a frame that lies whole in the chunk, read with local
//! variables only. Most commands and replies are small and arrive whole, so the relay pays
//! a few comparisons per header instead of the state machine's step per byte. Anything
//! unusual (a frame cut by the chunk, nesting, maps, attributes, inline commands) returns
//! `None` and the state machine reads it from its first byte, so both paths give the same
//! frames and the same state.

use super::Frame;

/// A whole top-level frame at the start of `bytes` and its length: an array (or push or
/// set) of scalars, or one scalar; for `commands`, only an array of bulk strings.
pub fn frame(bytes: &[u8], commands: bool) -> Option<(Frame, usize)> {
    let kind = *bytes.first()?;
    let mut frame = Frame {
        kind,
        ..Frame::default()
    };
    let aggregate = matches!(kind, b'*' | b'>' | b'~');
    if commands && kind != b'*' {
        return None;
    }
    if !aggregate {
        let used = scalar(bytes, &mut frame, 0)?;
        return Some((frame, used));
    }
    let (n, mut at) = header(bytes)?;
    frame.len = n;
    for index in 0..n.max(0) {
        let rest = &bytes[at..];
        if commands && rest.first() != Some(&b'$') {
            return None;
        }
        at += scalar(rest, &mut frame, index + 1)?;
    }
    Some((frame, at))
}

/// One scalar value at the start of `bytes` and its length. `position`: 0 for the top-level
/// value itself, else 1 + its index in the top-level array (the first element's string and
/// the third's integer are kept in `frame`).
fn scalar(bytes: &[u8], frame: &mut Frame, position: i64) -> Option<usize> {
    match *bytes.first()? {
        b'$' | b'!' | b'=' => {
            let (len, used) = header(bytes)?;
            let first = position == 1 && bytes[0] == b'$';
            frame.has_word |= first;
            if len < 0 {
                return Some(used);
            }
            let end = used.checked_add(len as usize)?.checked_add(2)?;
            let payload = bytes.get(used..end)?;
            if first {
                frame.push_word(&payload[..len as usize]);
            }
            Some(end)
        }
        b':' => {
            let (n, used) = header(bytes)?;
            if position == 3 {
                frame.third = Some(n);
            }
            Some(used)
        }
        b'+' | b'-' | b'_' | b'#' | b',' | b'(' => {
            Some(bytes.iter().position(|&b| b == b'\n')? + 1)
        }
        _ => None,
    }
}

/// `<type><decimal>\r\n`: the number and the line's length, if the line is whole and is one.
fn header(bytes: &[u8]) -> Option<(i64, usize)> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let digits = bytes[1..end].strip_suffix(b"\r")?;
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Some((if negative { -n } else { n }, end + 1))
}
