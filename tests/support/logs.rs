//! Log lines of a snigate process. The harness runs both roles with `--log-format json`, so a
//! line is a JSON object: `fields` (the event's, with `message`) and `span` (the connection's:
//! `id`, `peer`, `route`/`tunnel`, …). The few text-format lines a test asks for are read into
//! the same shape.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Line {
    pub raw: String,
    value: Value,
}

impl Line {
    pub fn parse(raw: &str) -> Line {
        let value = if raw.starts_with('{') {
            serde_json::from_str(raw)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {raw}"))
        } else {
            from_text(raw)
        };
        Line {
            raw: raw.to_owned(),
            value,
        }
    }

    pub fn json(&self) -> &Value {
        &self.value
    }

    pub fn message(&self) -> &str {
        self.value["fields"]["message"].as_str().unwrap_or("")
    }

    pub fn is(&self, message: &str) -> bool {
        self.message() == message
    }

    /// The event's field `key`, else the current span's.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let fields = &self.value["fields"];
        fields.get(key).or_else(|| self.value["span"].get(key))
    }

    /// Like `get`, as text (strings without quotes).
    pub fn field(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// Whether field `key` (of the event, else of the span) is `value`.
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.field(key).as_deref() == Some(value)
    }

    /// Asserts that field `key` (of the event, else of the span) is `value`.
    pub fn assert_field(&self, key: &str, value: &str) {
        let got = self.field(key);
        assert_eq!(got.as_deref(), Some(value), "{key} in {}", self.raw);
    }

    /// The id of the connection the line was logged in.
    pub fn conn_id(&self) -> Option<u64> {
        self.value["span"]["id"].as_u64()
    }
}

/// `<timestamp>  LEVEL [span{k=v …}:]* target: message key=value …` into the JSON shape.
fn from_text(raw: &str) -> Value {
    let mut words = raw.split_whitespace().skip(2);
    let (mut fields, mut span) = (Map::new(), Map::new());
    for w in words.by_ref() {
        let ends_target = w.ends_with(':') && !w.contains(['{', '}', '=']);
        if let Some((k, v)) = w.split_once('=') {
            let k = k.rsplit('{').next().unwrap_or(k);
            span.insert(k.into(), json!(v.trim_end_matches(['}', ':'])));
        }
        if ends_target {
            break;
        }
    }
    let rest: Vec<&str> = words.collect();
    let message: Vec<&str> = rest
        .iter()
        .take_while(|w| !w.contains('='))
        .copied()
        .collect();
    fields.insert("message".into(), json!(message.join(" ")));
    for w in &rest[message.len()..] {
        if let Some((k, v)) = w.split_once('=') {
            fields.insert(k.into(), json!(v.trim_matches('"')));
        }
    }
    json!({ "fields": fields, "span": span })
}

/// The lines of `lines` with `message`, in order.
pub fn with_message<'a>(lines: &'a [Line], message: &str) -> Vec<&'a Line> {
    lines.iter().filter(|l| l.is(message)).collect()
}

/// Every line is one JSON object with a timestamp and a level, and every value in it is
/// printable ASCII: a client-chosen byte (CR, LF, escape, NUL) never reaches the log raw.
pub fn assert_sanitised(lines: &[Line]) {
    for line in lines {
        let v = line.json();
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{}",
            line.raw
        );
        let mut strings = Vec::new();
        collect_strings(v, &mut strings);
        let printable = |s: &&str| s.chars().all(|c| c == ' ' || c.is_ascii_graphic());
        assert!(strings.iter().all(printable), "unsanitised: {}", line.raw);
    }
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// The connection that `line` ends left no other line at the default log level (a library
/// warning quoting client bytes would be a second, unsanitised line).
pub fn assert_one_line_per_connection(lines: &[Line], line: &Line) {
    let Some(id) = line.conn_id() else {
        return;
    };
    let same: Vec<&str> = lines
        .iter()
        .filter(|l| l.conn_id() == Some(id))
        .map(|l| l.raw.as_str())
        .collect();
    assert_eq!(
        same.len(),
        1,
        "connection {id} logged more than once: {same:#?}"
    );
}
