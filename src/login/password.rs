//! A password read from a file (a mounted Secret). It is only ever sent to the backend: it has
//! no `Display`, its `Debug` is a placeholder, and errors about its file name the path only.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The contents of a password file, without the line ending editors and `echo` add.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Arc<[u8]>);

/// Why a password file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} is empty")]
    Empty { path: String },
}

impl Password {
    /// Reads `path`; a trailing `\n` or `\r\n` is not part of the password.
    pub fn read(path: &Path) -> Result<Password, PasswordError> {
        let shown = || path.display().to_string();
        let mut bytes = std::fs::read(path).map_err(|source| PasswordError::Read {
            path: shown(),
            source,
        })?;
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(PasswordError::Empty { path: shown() });
        }
        Ok(Password(bytes.into()))
    }

    /// The password, to be written to the backend and nowhere else.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_are_trimmed_and_an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret \r\n\n").unwrap();
        let password = Password::read(&file).unwrap();
        assert_eq!(password.expose(), b"s3cret ");
        assert_eq!(format!("{password:?}"), "Password(…)");
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            Password::read(&file),
            Err(PasswordError::Empty { .. })
        ));
        let missing = dir.path().join("missing");
        let err = Password::read(&missing).unwrap_err().to_string();
        assert!(err.starts_with("cannot read "), "{err}");
    }
}
