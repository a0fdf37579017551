//! PostgreSQL through the gateway: clients that speak TLS themselves straight to it
//! (`direct`), and plain clients through the sidecar (`tunnel`). Both meet one fixture.

mod direct;
mod tunnel;

use crate::support::clients::postgres::verify_full;
use crate::support::*;

/// A PostgreSQL server behind a gateway route `postgres` that allows the default client.
struct Fixture {
    pg: Postgres,
    pki: Pki,
    gw: Gateway,
}

fn fixture() -> Fixture {
    let pg = Postgres::start();
    let pki = Pki::new();
    let postgres = worker_route("postgres", PG_SNI, Protocol::Postgres, pg.addr());
    let gw = Gateway::start(&gateway(&pki, vec![postgres]));
    Fixture { pg, pki, gw }
}

impl Fixture {
    /// verify-full conninfo straight to the gateway, with the default client certificate.
    fn direct(&self) -> String {
        verify_full(PG_SNI, self.gw.port(), &self.pki)
    }

    /// A sidecar with tunnel `postgres` to the gateway.
    fn sidecar(&self) -> Sidecar {
        let t = tunnel("postgres", Protocol::Postgres, self.gw.addr, PG_SNI);
        Sidecar::start(&sidecar(&self.pki, vec![t]))
    }
}
