//! A real Prometheus (Debian's `prometheus`) for the monitoring tests: started on a free
//! loopback port with a generated scrape config and the rule groups of
//! openshift/monitoring/prometheusrule.yaml, queried through its own HTTP API.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::admin::{http, try_http};
use crate::support::certs::tempdir;
use crate::support::process::ChildGuard;
use crate::support::{free_port, loopback, poll, repo_root, wait_for, READY};

/// The rule groups operators deploy: the PrometheusRule object's spec.
pub fn rule_file() -> String {
    serde_yaml::to_string(&rule_groups()).unwrap()
}

/// The rules with `alert`'s `for:` set to `hold`, so a test sees it fire without waiting the
/// production duration (tests/manifests/rules.test.yaml checks that one with promtool).
pub fn rule_file_holding(alert: &str, hold: &str) -> String {
    let mut spec = rule_groups();
    let rules = spec["groups"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|group| group["rules"].as_sequence_mut().unwrap().iter_mut());
    let mut found = 0;
    for rule in rules.filter(|rule| rule["alert"].as_str() == Some(alert)) {
        rule["for"] = hold.into();
        found += 1;
    }
    assert_eq!(found, 1, "alert {alert} in the rules");
    serde_yaml::to_string(&spec).unwrap()
}

/// The `spec` of openshift/monitoring/prometheusrule.yaml: what Prometheus loads.
fn rule_groups() -> serde_yaml::Value {
    let path = repo_root().join("openshift/monitoring/prometheusrule.yaml");
    let mut object: serde_yaml::Value =
        serde_yaml::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    std::mem::take(&mut object["spec"])
}

pub struct Prometheus {
    _guard: ChildGuard,
    dir: TempDir,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Scrapes each `(job, admin address)` every second and evaluates `rules` every second.
    pub fn start(jobs: &[(&str, SocketAddr)], rules: &str) -> Prometheus {
        let dir = tempdir("snigate-prometheus-");
        fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        let mut config = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [rules.yaml]\nscrape_configs:\n",
        );
        for (job, addr) in jobs {
            config +=
                &format!("  - job_name: {job}\n    static_configs: [{{targets: ['{addr}']}}]\n");
        }
        fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        for _attempt in 0..5 {
            if let Some((guard, addr)) = Self::try_start(&dir, free_port()) {
                return Prometheus {
                    _guard: guard,
                    dir,
                    addr,
                };
            }
        }
        panic!("prometheus did not start on any of 5 free ports");
    }

    /// `None` if the port was taken meanwhile: it exited, or another Prometheus answers there.
    fn try_start(dir: &TempDir, port: u16) -> Option<(ChildGuard, SocketAddr)> {
        let log = File::create(dir.path().join("prometheus.log")).unwrap();
        let data = dir.path().join("data").display().to_string();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={data}"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus (Debian package prometheus: scripts/install-deps.sh)");
        // Stopped with SIGTERM (a clean shutdown), killed if that takes too long.
        let mut guard = ChildGuard::new(child, libc::SIGTERM);
        let addr = loopback(port);
        let ready = wait_for("prometheus /-/ready", || {
            if guard.exited().is_some() {
                return Some(false);
            }
            let reply = try_http(addr, "GET", "/-/ready").ok()?;
            if reply.status != 200 {
                return None;
            }
            let flags = try_http(addr, "GET", "/api/v1/status/flags").ok()?;
            let flags: Value = serde_json::from_str(&flags.body).ok()?;
            Some(flags["data"]["storage.tsdb.path"] == data.as_str())
        });
        ready.then_some((guard, addr))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer.
    pub fn api(&self, path: &str) -> Value {
        let reply = http(self.addr, "GET", &format!("/api/v1/{path}"));
        let body: Value = serde_json::from_str(&reply.body)
            .unwrap_or_else(|e| panic!("/api/v1/{path}: {e}: {}", reply.body));
        assert_eq!(body["status"], "success", "/api/v1/{path}: {body}");
        body["data"].clone()
    }

    /// Waits until every scrape target is up.
    pub fn wait_targets_up(&self, count: usize) {
        let up = poll(READY, || {
            let targets = self.api("targets");
            let active = targets["activeTargets"].as_array()?.clone();
            let healthy = active.iter().filter(|t| t["health"] == "up").count();
            (healthy == count).then_some(())
        });
        up.unwrap_or_else(|| panic!("targets not up: {}\n{}", self.api("targets"), self.log()));
    }

    /// The active (pending or firing) alerts named `name`.
    pub fn alerts(&self, name: &str) -> Vec<Value> {
        let data = self.api("alerts");
        let all = data["alerts"].as_array().cloned().unwrap_or_default();
        all.into_iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    }

    /// The alerting rule `name` as `/api/v1/rules` shows it (its state and active alerts).
    pub fn rule(&self, name: &str) -> Value {
        let data = self.api("rules?type=alert");
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no rule {name} in /api/v1/rules: {data}"))
    }

    /// Series matching `selector` in Prometheus' storage (`/api/v1/series`).
    pub fn series(&self, selector: &str) -> Vec<Value> {
        let data = self.api(&format!("series?match[]={}", percent_encode(selector)));
        data.as_array().cloned().unwrap_or_default()
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
