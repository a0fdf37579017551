//! Replays conversations captured from real clients and servers (tests/captures, made by
//! capture.py) through a tracker, the way the relay would see them: whole reads, every read
//! split at every byte, and one byte at a time. A split is checked against the state at the
//! next message end rather than the end of the read, which keeps a read of thousands of COPY
//! rows linear instead of quadratic.

use std::path::PathBuf;

use super::Conversation;
use crate::config::Protocol;

const CLIENT: usize = 0;
const SERVER: usize = 1;

/// Where the messages of one direction (`true`: the client's) end, found by a decoder other
/// than the tracker's.
pub type Oracle = fn(&[u8], bool) -> Vec<usize>;

/// One captured record: the direction of its bytes, or a marker.
enum Record {
    Bytes(usize, Vec<u8>),
    /// `true`: the client has no request outstanding here.
    Mark(bool),
}

fn load(name: &str) -> Vec<Record> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/captures/{name}.cap"));
    let file = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut records = Vec::new();
    let mut rest = &file[..];
    while let [tag, a, b, c, d, tail @ ..] = rest {
        let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        let (bytes, tail) = tail.split_at(len);
        records.push(match tag {
            b'c' => Record::Bytes(CLIENT, bytes.to_vec()),
            b's' => Record::Bytes(SERVER, bytes.to_vec()),
            b'r' | b'b' => Record::Mark(*tag == b'r'),
            other => panic!("{name}: unknown record tag {other}"),
        });
        rest = tail;
    }
    records
}

fn feed(conversation: &mut Conversation, side: usize, bytes: &[u8]) {
    match side {
        CLIENT => conversation.client_sent(bytes),
        _ => conversation.far_side_sent(bytes),
    }
}

/// Replays capture `name`: the tracker agrees with every marker, is never at rest with a
/// message partly forwarded (by `oracle`), and ends in the same state however each read is
/// split. Returns how many markers were checked.
pub fn replay(name: &str, protocol: Protocol, oracle: Oracle) -> usize {
    let records = load(name);
    let mut streams = [Vec::new(), Vec::new()];
    for record in &records {
        if let Record::Bytes(side, bytes) = record {
            streams[*side].extend_from_slice(bytes);
        }
    }
    let ends = [
        oracle(&streams[CLIENT], true),
        oracle(&streams[SERVER], false),
    ];
    let at_ends = |offsets: [usize; 2]| {
        (0..2).all(|side| offsets[side] == 0 || ends[side].binary_search(&offsets[side]).is_ok())
    };

    let mut conversation = Conversation::new(protocol);
    let (mut offsets, mut marks) = ([0usize; 2], 0);
    for record in &records {
        let (side, bytes) = match record {
            Record::Mark(rest) => {
                assert_eq!(
                    conversation.at_rest(),
                    *rest,
                    "{name}: marker {marks}: {conversation:?}"
                );
                marks += 1;
                continue;
            }
            Record::Bytes(side, bytes) => (*side, bytes),
        };
        let mut whole = conversation.clone();
        feed(&mut whole, side, bytes);
        // The message ends inside this read cut it into pieces; the tracker must reach the
        // same state at each cut whatever split it sees inside the piece before it.
        let mut cuts = vec![0];
        let inside = ends[side]
            .iter()
            .filter_map(|&e| e.checked_sub(offsets[side]));
        cuts.extend(inside.filter(|&e| e > 0 && e < bytes.len()));
        cuts.push(bytes.len());
        let mut at_cut = conversation.clone();
        for piece in cuts.windows(2) {
            let (start, end) = (piece[0], piece[1]);
            let mut next = at_cut.clone();
            feed(&mut next, side, &bytes[start..end]);
            for split in start + 1..end {
                let mut part = at_cut.clone();
                feed(&mut part, side, &bytes[start..split]);
                let mut at = offsets;
                at[side] += split;
                assert!(
                    !part.at_rest() || at_ends(at),
                    "{name}: at rest with a message partly forwarded at {at:?}"
                );
                feed(&mut part, side, &bytes[split..end]);
                assert_eq!(part, next, "{name}: a read split at {at:?}");
            }
            at_cut = next;
        }
        assert_eq!(at_cut, whole, "{name}: read whole or message by message");
        offsets[side] += bytes.len();
        assert!(
            !whole.at_rest() || at_ends(offsets),
            "{name}: at {offsets:?}"
        );
        conversation = whole;
    }
    assert_eq!(one_byte_at_a_time(&records, protocol), marks_of(&records));
    marks
}

fn marks_of(records: &[Record]) -> Vec<bool> {
    let marks = records.iter().filter_map(|r| match r {
        Record::Mark(rest) => Some(*rest),
        Record::Bytes(..) => None,
    });
    marks.collect()
}

/// The tracker's verdict at every marker when each byte is a read of its own.
fn one_byte_at_a_time(records: &[Record], protocol: Protocol) -> Vec<bool> {
    let mut conversation = Conversation::new(protocol);
    let mut verdicts = Vec::new();
    for record in records {
        match record {
            Record::Mark(_) => verdicts.push(conversation.at_rest()),
            Record::Bytes(side, bytes) => {
                for byte in bytes.chunks(1) {
                    feed(&mut conversation, *side, byte);
                }
            }
        }
    }
    verdicts
}
