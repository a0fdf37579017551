//! Real servers on free loopback ports, each in its own tempdir: the backends, each counting
//! exactly the connections it accepted (so a test can prove a refusal reached no backend):
//! Redis, PostgreSQL and a server that speaks first (a `tcp` route's); a Prometheus that
//! scrapes the admin endpoints; squid, the egress proxy a sidecar reaches its gateway
//! through; and the benchmark's emulated WAN link.

mod postgres;
mod prometheus;
mod redis_server;
mod speaker;
mod squid;
mod wanlink;

pub use postgres::Postgres;
pub use prometheus::{rule_file, rule_file_holding, Prometheus};
pub use redis_server::RedisServer;
pub use speaker::Speaker;
pub use squid::{Access, Squid, SquidOpts};
pub use wanlink::Wanlink;
