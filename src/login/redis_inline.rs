//! Redis' inline command splitting (`sdssplitargs`), byte for byte: the gateway must find
//! the same command name in `AU"TH" x` that Redis finds, or a client could hide an AUTH.

/// The arguments of one inline command line (without its line ending); `None` where Redis
/// would answer "unbalanced quotes" and close.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p == line.len() {
            return Some(args);
        }
        let (arg, next) = token(line, p)?;
        args.push(arg);
        p = next;
    }
}

/// C's isspace.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One argument starting at `p`; returns it and where the scan goes on.
fn token(line: &[u8], mut p: usize) -> Option<(Vec<u8>, usize)> {
    let at = |i: usize| line.get(i).copied();
    let mut arg = Vec::new();
    let (mut in_double, mut in_single) = (false, false);
    loop {
        let c = at(p);
        if in_double {
            match (
                c?,
                at(p + 1),
                at(p + 2).and_then(hex),
                at(p + 3).and_then(hex),
            ) {
                (b'\\', Some(b'x'), Some(hi), Some(lo)) => {
                    arg.push(hi * 16 + lo);
                    p += 3;
                }
                (b'\\', Some(escaped), _, _) => {
                    arg.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    p += 1;
                }
                (b'"', _, _, _) => {
                    // A closing quote must be followed by a space or the end.
                    return at(p + 1).is_none_or(is_space).then_some((arg, p + 1));
                }
                (other, _, _, _) => arg.push(other),
            }
        } else if in_single {
            match (c?, at(p + 1)) {
                (b'\\', Some(b'\'')) => {
                    arg.push(b'\'');
                    p += 1;
                }
                (b'\'', _) => return at(p + 1).is_none_or(is_space).then_some((arg, p + 1)),
                (other, _) => arg.push(other),
            }
        } else {
            match c {
                None | Some(b' ' | b'\n' | b'\r' | b'\t' | 0) => return Some((arg, p)),
                Some(b'"') => in_double = true,
                Some(b'\'') => in_single = true,
                Some(other) => arg.push(other),
            }
        }
        p += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Option<Vec<String>> {
        split_args(s.as_bytes()).map(|args| {
            args.into_iter()
                .map(|a| String::from_utf8(a).unwrap())
                .collect()
        })
    }

    #[test]
    fn splits_like_sdssplitargs() {
        assert_eq!(split("AUTH  pw").unwrap(), ["AUTH", "pw"]);
        assert_eq!(split("AU\"TH\" x").unwrap(), ["AUTH", "x"]);
        assert_eq!(split("'a\\'b' \"c\\x41\\n\"").unwrap(), ["a'b", "cA\n"]);
        assert_eq!(split("\t \x0b").unwrap(), Vec::<String>::new());
        assert_eq!(split("\"\"").unwrap(), [""]);
        assert_eq!(split("\"unbalanced"), None);
        assert_eq!(split("\"a\"b"), None, "closing quote must end the argument");
        assert_eq!(split("'a'b"), None);
    }
}
