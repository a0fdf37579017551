//! Integration tests: the real binary, real servers, real clients (harness in tests/support).
//! One test binary, so the harness is built and linked once and every test runs in parallel
//! with the others.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod backend_down;
mod backend_restart;
mod cli;
mod config_check;
mod connect;
mod drain;
mod drain_safe_points;
mod examples;
mod identity;
mod lifecycle;
mod limits;
mod login;
mod logs;
mod metrics;
mod notify;
mod postgres;
mod prometheus;
mod proxy;
mod proxy_wan;
mod redis_tunnel;
mod refusals;
mod reload;
mod route_limit;
mod routing;
mod secrets;
mod sidecar_tls;
mod snigate_protocol;
mod tls_policy;
mod warm;
