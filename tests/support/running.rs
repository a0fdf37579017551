//! A running snigate process: its log, its admin endpoint (readiness, metrics, reload
//! counters), signals, exit status, and its config file rewritten for a SIGHUP.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;

use tempfile::TempDir;

use super::admin::{http, scrape, HttpReply, Scrape};
use super::config::yaml;
use super::logs::Line;
use super::process::{signal, ChildGuard};
use super::wait_for;

/// A running `snigate <role>`, its config file and log in a tempdir.
pub struct Process {
    guard: ChildGuard,
    pub dir: TempDir,
    pub config_path: PathBuf,
    log_path: PathBuf,
    admin: Option<SocketAddr>,
}

impl Process {
    /// The process in `guard`, once its `admin listening` line is written and `/startup`
    /// answers 200 (listeners bound, their `listening` lines written).
    pub fn started(
        guard: ChildGuard,
        dir: TempDir,
        config_path: PathBuf,
        log_path: PathBuf,
        config: &str,
    ) -> Process {
        let mut proc = Process {
            guard,
            dir,
            config_path,
            log_path,
            admin: None,
        };
        wait_for("snigate to start", || {
            if let Some(status) = proc.guard.exited() {
                let log = proc.log_text();
                panic!("snigate exited early ({status}); config:\n{config}\nlog:\n{log}");
            }
            let line = proc.log().into_iter().find(|l| l.is("admin listening"))?;
            let admin = line.field("addr")?.parse().ok()?;
            proc.admin = Some(admin);
            (http(admin, "GET", "/startup").status == 200).then_some(())
        });
        proc
    }

    /// `addr=` of every `listening` line, by tunnel name ("" for the gateway).
    pub fn listening(&self) -> HashMap<String, SocketAddr> {
        let addr = |l: &Line| l.field("addr")?.parse().ok();
        let lines = self.lines("listening");
        let named = lines
            .iter()
            .filter_map(|l| Some((l.field("tunnel").unwrap_or_default(), addr(l)?)));
        named.collect()
    }

    /// Everything the process has written to stderr so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The complete lines written so far.
    pub fn log(&self) -> Vec<Line> {
        let text = self.log_text();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete.lines().map(Line::parse).collect()
    }

    /// The lines with `message`, in order.
    pub fn lines(&self, message: &str) -> Vec<Line> {
        self.log().into_iter().filter(|l| l.is(message)).collect()
    }

    /// Waits for the first line matching `pred`.
    pub fn wait_line(&self, what: &str, pred: impl Fn(&Line) -> bool) -> Line {
        wait_for(what, || self.log().into_iter().find(&pred))
    }

    /// Waits until at least `n` lines have `message`; returns them all.
    pub fn wait_lines(&self, message: &str, n: usize) -> Vec<Line> {
        wait_for(&format!("{n} {message:?} lines"), || {
            let lines = self.lines(message);
            (lines.len() >= n).then_some(lines)
        })
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin
            .expect("started processes have an admin endpoint")
    }

    pub fn get(&self, path: &str) -> HttpReply {
        http(self.admin(), "GET", path)
    }

    pub fn post(&self, path: &str) -> HttpReply {
        http(self.admin(), "POST", path)
    }

    pub fn metrics(&self) -> Scrape {
        scrape(self.admin())
    }

    /// Scrapes `/metrics` until `cond` holds; returns that scrape.
    pub fn wait_metrics(&self, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
        wait_for(what, || Some(self.metrics()).filter(&cond))
    }

    /// Polls `/readyz` until its status is `status` and its body has every one of `parts`.
    pub fn wait_readyz(&self, status: u16, parts: &[&str]) -> String {
        let what = format!("/readyz {status} with {parts:?}");
        wait_for(&what, || {
            let r = self.get("/readyz");
            let ok = r.status == status && parts.iter().all(|p| r.body.contains(p));
            ok.then_some(r.body)
        })
    }

    /// Refused connections counted so far: before a route (`handshake_failures_total`) and
    /// after (`refusals_total`). Counted right after the `refused` line is written.
    pub fn refusals(&self) -> f64 {
        let m = self.metrics();
        m.sum("snigate_handshake_failures_total") + m.sum("snigate_refusals_total")
    }

    /// Waits until no relayed connection is open: each has written its `closed` line.
    pub fn wait_idle(&self) {
        self.wait_metrics("no open connection", |m| {
            m.sum("snigate_connections_open") == 0.0
        });
    }

    pub fn reloads(&self, what: &str, result: &str) -> f64 {
        let labels = [("what", what), ("result", result)];
        self.metrics().count("snigate_reloads_total", &labels)
    }

    /// Waits for the `n`-th reload of `what` with `result`, and no more.
    pub fn wait_reloads(&self, what: &str, result: &str, n: f64) {
        let desc = format!("{what} reload {result} #{n}");
        wait_for(&desc, || (self.reloads(what, result) >= n).then_some(()));
        assert_eq!(self.reloads(what, result), n, "{desc}");
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Sends `sig` without waiting.
    pub fn signal(&self, sig: libc::c_int) {
        signal(self.pid(), sig);
    }

    /// Sends `sig` and waits for the exit status.
    pub fn stop(&mut self, sig: libc::c_int) -> ExitStatus {
        self.guard.stop(sig)
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.guard.wait_exit()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.guard.exited()
    }

    /// Replaces the config file atomically (rename), e.g. before a SIGHUP.
    pub fn write_config(&self, config: &impl serde::Serialize) {
        self.write_config_text(&yaml(config));
    }

    pub fn write_config_text(&self, text: &str) {
        let tmp = self.config_path.with_extension("yaml.tmp");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, &self.config_path).unwrap();
    }
}
