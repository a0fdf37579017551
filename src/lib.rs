//! snigate: a TLS/SNI gateway and sidecar that carry Redis, PostgreSQL and other TCP services
//! through one OpenShift passthrough Route.
//!
//! The **gateway** terminates TLS, picks a route by the SNI of the current handshake, checks
//! the client certificate against the route's allow list and relays to the in-cluster backend.
//! The **sidecar** listens in plaintext on loopback beside the worker and opens TLS with SNI to
//! the gateway. See `DESIGN.md` in the shared folder and the README.
//!
//! # Layout
//! - `config` — YAML schema, loading and validation (file, key and fix in every error).
//! - `tls` — PEM loading, server configs per route, the sidecar's client config, identities.
//! - `listener` — accept loops with backoff and connection ids.
//! - `dial` — outbound TCP with a deadline.
//! - `gateway` — the gateway's per-connection steps: preamble, TLS, authorize, connect, relay;
//!   `gateway::routing` is its SNI name → route table (pure).
//! - `sidecar` — the sidecar's per-connection steps: preamble, TLS to the gateway, relay.
//! - `relay` — bidirectional copy with half-close, byte counts and who closed.
//! - `conversation` — per-protocol trackers that tell when a connection is at rest (drain).
//! - `buffer` — read buffers lent from a per-thread pool only while bytes flow.
//! - `protocol` — PostgreSQL preambles and each protocol's native error reply.
//! - `closing` — the one log line each connection leaves.
//! - `metrics` — Prometheus metrics per route or tunnel.
//! - `admin` — `/livez` `/startup` `/readyz` `/metrics` `/quitquitquit`, and health state.
//! - `probe` — background health probes of backends in their own protocol.
//! - `reload` — SIGHUP and certificate-file watching; each role's live config.
//! - `retry` — retrying a far side that is restarting while a new client waits.
//! - `error` — the side (client, backend, local) every error is classified by.
//! - `shutdown` — signals, stop delay and drain.
//! - `notify` — systemd's readiness protocol (`READY=1`, `STOPPING=1`).
//! - `certs` — the development PKI behind `snigate certs`.
//! - `connect` — `snigate connect`: the sidecar with one tunnel, from flags.

pub mod admin;
pub mod buffer;
pub mod certs;
pub mod closing;
pub mod config;
pub mod connect;
pub mod conversation;
pub mod dial;
pub mod error;
pub mod gateway;
pub mod listener;
pub mod login;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod protocol;
pub mod relay;
pub mod reload;
pub mod retry;
pub mod shutdown;
pub mod sidecar;
pub mod tls;
