//! What the Redis tracker learns about one complete top-level RESP frame: its type, its
//! length, its first element when that is a short string (a command's name, a pub/sub
//! message's kind) and its third when that is an integer (a confirmation's count).

/// Longest first element kept: the longest word the tracker compares against.
pub const WORD: usize = 12;

/// What the tracker learns about one complete top-level frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Type byte of the top-level value (attributes before it skipped); `*` for an inline
    /// command.
    pub kind: u8,
    /// Element count of a top-level aggregate (-1: null), words of an inline command.
    pub len: i64,
    /// The third element when it is an integer (the count in a pub/sub confirmation).
    pub third: Option<i64>,
    pub(super) word: [u8; WORD],
    /// Bytes of `word` filled; more than [`WORD`] when the first word was too long to keep.
    pub(super) word_len: u8,
    /// Whether the first element was a string (or an inline word) at all.
    pub(super) has_word: bool,
}

impl Frame {
    /// The first element, when it is a string of at most [`WORD`] bytes.
    pub fn word(&self) -> Option<&[u8]> {
        let len = self.word_len as usize;
        (self.has_word && len <= WORD).then(|| &self.word[..len])
    }

    /// Appends to the first element's bytes; marks it too long past [`WORD`].
    pub(super) fn push_word(&mut self, bytes: &[u8]) {
        let have = self.word_len as usize;
        if have + bytes.len() > WORD {
            self.word_len = u8::MAX;
            return;
        }
        self.word[have..have + bytes.len()].copy_from_slice(bytes);
        self.word_len += bytes.len() as u8;
    }
}
