//! A real Prometheus scrapes a running gateway and sidecar with the alert rules operators
//! deploy (openshift/monitoring/prometheusrule.yaml): the backend-down alert goes pending when
//! Redis stops, fires, and resolves when Redis is back, seen through Prometheus' own API; and
//! every series the dashboard queries exists in its storage after a real scrape. This also
//! proves the exposition format with the scraper users run.
//!
//! The alert's production `for: 2m` is shortened to a few seconds here (the rule's expression,
//! labels and annotations are the deployed ones); promtool's rule tests check the 2 minutes.

use std::time::Duration;

use serde_json::Value;

use crate::support::certs::{crl, write};
use crate::support::clients::tools::redis_cli;
use crate::support::config::ms;
use crate::support::servers::{rule_file, rule_file_holding, Prometheus};
use crate::support::*;

const ALERT: &str = "SnigateBackendDown";
/// The alert's `for:` here: long enough to be seen pending first.
const HOLD: &str = "4s";

/// Redis behind a gateway (backend probes every second, a route limit) and a sidecar
/// (gateway probes every second), both with their admin endpoint.
struct Stack {
    _pki: Pki,
    redis: Option<RedisServer>,
    redis_port: u16,
    gateway: Gateway,
    sidecar: Sidecar,
}

impl Stack {
    fn start() -> Stack {
        let (pki, redis) = (Pki::new(), RedisServer::start());
        let mut route = worker_route("redis", REDIS_SNI, Protocol::Redis, redis.addr());
        route.max_connections = Some(50);
        let mut config = gateway(&pki, vec![route]);
        config.timeouts.probe_interval = ms(1000);
        // A CRL, so that its nextUpdate is exported as in production.
        let crl = crl(&pki, &[], time::Duration::days(30));
        config.tls.crl = Some(write(pki.path(), "clients.crl", &crl));
        let gateway = Gateway::start(&config);
        let mut config = redis_sidecar(&pki, gateway.addr);
        config.timeouts.probe_interval = ms(1000);
        let sidecar = Sidecar::start(&config);
        Stack {
            _pki: pki,
            redis_port: redis.port,
            redis: Some(redis),
            gateway,
            sidecar,
        }
    }

    fn prometheus(&self) -> Prometheus {
        let jobs = [
            ("snigate-gateway", self.gateway.admin()),
            ("snigate-sidecar", self.sidecar.admin()),
        ];
        let prometheus = Prometheus::start(&jobs, &rule_file_holding(ALERT, HOLD));
        prometheus.wait_targets_up(2);
        prometheus
    }

    fn redis_cli(&self, args: &[&str]) -> String {
        redis_cli(self.sidecar.port("redis"), args)
    }
}

/// One stage of the alert's life, as Prometheus' API shows it (kept for the record).
fn show(stage: &str, json: &Value) {
    println!(
        "--- {stage}\n{}",
        serde_json::to_string_pretty(json).unwrap()
    );
}

fn wait_alert_state(prometheus: &Prometheus, state: &str, limit: Duration) -> Value {
    let found = poll(limit, || {
        let alerts = prometheus.alerts(ALERT);
        alerts
            .iter()
            .any(|a| a["state"] == state)
            .then(|| prometheus.api("alerts"))
    });
    found.unwrap_or_else(|| {
        panic!(
            "{ALERT} never {state}: {}\n{}",
            prometheus.api("alerts"),
            prometheus.log()
        )
    })
}

#[test]
fn backend_down_alert_goes_pending_fires_and_resolves_in_a_real_prometheus() {
    let mut stack = Stack::start();
    let prometheus = stack.prometheus();
    wait_for("far_side_up 1 in Prometheus", || {
        let data =
            prometheus.api("query?query=snigate_far_side_up%7Bjob%3D%22snigate-gateway%22%7D");
        (data["result"][0]["value"][1] == "1").then_some(())
    });
    assert!(prometheus.alerts(ALERT).is_empty());

    drop(stack.redis.take());
    let pending = wait_alert_state(&prometheus, "pending", READY);
    show("pending: GET /api/v1/alerts after Redis stopped", &pending);
    let alert = &prometheus.alerts(ALERT)[0];
    assert_eq!(alert["labels"]["route"], "redis");
    assert_eq!(alert["labels"]["job"], "snigate-gateway");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(
        alert["annotations"]["summary"],
        "snigate route redis cannot reach its backend"
    );
    // The sidecar's probe only needs the gateway: no sidecar alert.
    assert!(prometheus
        .alerts("SnigateSidecarCannotReachGateway")
        .is_empty());

    let firing = wait_alert_state(&prometheus, "firing", READY);
    show(&format!("firing: GET /api/v1/alerts {HOLD} later"), &firing);

    stack.redis = Some(RedisServer::start_on(stack.redis_port));
    let resolved = poll(READY, || {
        let rule = prometheus.rule(ALERT);
        (rule["state"] == "inactive" && prometheus.alerts(ALERT).is_empty()).then_some(rule)
    });
    let rule =
        resolved.unwrap_or_else(|| panic!("{ALERT} still active: {}", prometheus.api("alerts")));
    show(
        "resolved: GET /api/v1/alerts after Redis is back",
        &prometheus.api("alerts"),
    );
    show("resolved: the rule in GET /api/v1/rules", &rule);
    assert_eq!(rule["health"], "ok");
    assert_eq!(rule["alerts"].as_array().map(Vec::len), Some(0));
}

/// `snigate_*` selectors in a PromQL expression: a metric name and its `{...}` matchers.
fn selectors(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("snigate_") {
        let tail = &rest[start..];
        let name_len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let matchers = tail[name_len..]
            .strip_prefix('{')
            .and_then(|m| m.find('}').map(|end| &tail[name_len..name_len + end + 2]))
            .unwrap_or("");
        found.push(format!("{}{matchers}", &tail[..name_len]));
        rest = &tail[name_len + matchers.len()..];
    }
    found
}

#[test]
fn every_series_the_dashboard_and_rules_query_is_in_a_real_scrape() {
    let mut stack = Stack::start();
    assert_eq!(stack.redis_cli(&["SET", "seen", "by prometheus"]), "OK\n");
    assert_eq!(stack.redis_cli(&["GET", "seen"]), "by prometheus\n");
    // A handshake failure (not TLS) and, with Redis gone, a refusal.
    let mut plain = std::net::TcpStream::connect(stack.gateway.addr).unwrap();
    std::io::Write::write_all(&mut plain, b"PING\r\n").unwrap();
    drop(plain);
    drop(stack.redis.take());
    let reply = stack.redis_cli(&["PING"]);
    assert!(
        reply.starts_with("LOADING snigate: redis: backend"),
        "{reply}"
    );
    let prometheus = stack.prometheus();

    let path = repo_root().join("openshift/monitoring/console-dashboard/snigate.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for selector in selectors(target["expr"].as_str().unwrap()) {
                let series = wait_series(&prometheus, &selector);
                assert!(
                    !series.is_empty(),
                    "{selector} ({}) not in Prometheus",
                    panel["title"]
                );
                checked.push(selector);
            }
        }
    }
    println!("dashboard selectors found in Prometheus: {checked:#?}");
    assert!(checked.len() >= 13, "{checked:?}");

    // The rules' label matchers select incidents (reason="route_full"), so their metric names.
    let mut names: Vec<String> = selectors(&rule_file())
        .into_iter()
        .map(|s| s.split('{').next().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names.dedup();
    for name in &names {
        assert!(
            !wait_series(&prometheus, name).is_empty(),
            "rule metric {name} not in Prometheus"
        );
    }
    println!("alert rule metrics found in Prometheus: {names:#?}");
}

/// Series of `selector`, once a scrape after the traffic above has been stored.
fn wait_series(prometheus: &Prometheus, selector: &str) -> Vec<Value> {
    poll(READY, || {
        let series = prometheus.series(selector);
        (!series.is_empty()).then_some(series)
    })
    .unwrap_or_default()
}

#[test]
fn selectors_are_read_from_promql() {
    assert_eq!(
        selectors(
            r#"max by (job) (snigate_far_side_up and on (job) snigate_build_info{role="gateway"}) / 86400"#
        ),
        vec![
            "snigate_far_side_up",
            r#"snigate_build_info{role="gateway"}"#
        ]
    );
    assert_eq!(
        selectors("rate(snigate_bytes_total[5m])"),
        vec!["snigate_bytes_total"]
    );
}
