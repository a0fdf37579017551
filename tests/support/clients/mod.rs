//! Clients of the gateway and the sidecar: real ones (rustls, redis-cli, psql, tokio-postgres,
//! redis-py, psycopg, OpenSSL) and hand-made bytes no client library would send.

pub mod hello;
pub mod postgres;
pub mod resp;
pub mod tls;
pub mod tools;
