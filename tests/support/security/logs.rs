//! The `refused` log lines: one per refusal, sanitised, nothing else for that connection.

use std::time::Duration;

use crate::support::snigate::{field, message, Proc};
use crate::support::{wait_for, READY};

/// The `refused ...` lines of a snigate log, in order.
pub fn refused_lines(proc: &Proc) -> Vec<String> {
    proc.log()
        .lines()
        .filter(|l| message(l).as_deref() == Some("refused"))
        .map(String::from)
        .collect()
}

/// Waits for the `before + 1`-th `refused` line, asserts it is the only new one, that its
/// reason is `reason` and that the whole log is made of sanitised lines. Returns the line.
pub fn expect_refusal(proc: &Proc, before: usize, reason: &str) -> String {
    wait_for(&format!("refused reason={reason}"), READY, || {
        (refused_lines(proc).len() > before).then_some(())
    });
    // A second line for the same connection would follow right after the first.
    std::thread::sleep(Duration::from_millis(100));
    let new = refused_lines(proc).split_off(before);
    assert_eq!(new.len(), 1, "expected one refused line:\n{}", proc.log());
    let line = new[0].clone();
    assert_eq!(
        field(&line, "reason").as_deref(),
        Some(reason),
        "wrong reason in {line}"
    );
    assert_sanitised(&proc.log());
    assert_one_line_per_connection(&proc.log(), &line);
    line
}

/// The connection that `line` ends left no other line at the default log level (a library
/// warning quoting client bytes would be a second, unsanitised line).
pub fn assert_one_line_per_connection(log: &str, line: &str) {
    let Some(id) = conn_id(line) else {
        return;
    };
    let tag = format!("conn{{id={id} ");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&tag)).collect();
    assert_eq!(
        lines.len(),
        1,
        "connection {id} logged more than once: {lines:#?}"
    );
}

/// The `id` of the `conn{id=N ...}` span a log line was written in.
pub fn conn_id(line: &str) -> Option<u64> {
    let rest = &line[line.find("conn{id=")? + "conn{id=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Every line of a text log starts with its timestamp and holds printable ASCII only: a
/// client-chosen byte (CR, LF, escape) never splits or forges a line.
pub fn assert_sanitised(log: &str) {
    let bad: Vec<&str> = log
        .lines()
        .filter(|line| {
            !line.starts_with("20") || !line.chars().all(|c| c == ' ' || c.is_ascii_graphic())
        })
        .collect();
    assert!(bad.is_empty(), "unsanitised log lines: {bad:#?}");
}
