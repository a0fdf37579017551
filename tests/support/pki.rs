//! Per-run certificates made by the binary under test (`snigate certs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::{run, snigate_bin, texts, CMD};

pub const REDIS_SNI: &str = "redis.snigate.test";
pub const PG_SNI: &str = "postgres.snigate.test";
/// Routes whose `allow` list excludes the default client identity.
pub const LOCKED_SNI: &str = "locked.snigate.test";
pub const LOCKED_PG_SNI: &str = "locked-pg.snigate.test";
pub const TCP_SNI: &str = "tcp.snigate.test";
/// Identity carried by the default client certificate.
pub const CLIENT_NAME: &str = "worker.snigate.test";

/// A private CA with one server certificate (SANs: every name above) and one client
/// certificate, in its own tempdir. Each `Pki::new()` is an independent CA, so a second one
/// serves the "signed by another CA" cases.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        Self::with_client_name(CLIENT_NAME)
    }

    pub fn with_client_name(client: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("snigate-pki-")
            .tempdir()
            .expect("tempdir");
        let mut cmd = Command::new(snigate_bin());
        cmd.arg("certs").arg("--out").arg(dir.path());
        for name in [REDIS_SNI, PG_SNI, LOCKED_SNI, LOCKED_PG_SNI, TCP_SNI] {
            cmd.args(["--server-name", name]);
        }
        cmd.args(["--client-name", client]);
        let out = run(&mut cmd, CMD);
        let (o, e) = texts(&out);
        assert!(
            out.status.success(),
            "snigate certs failed: {out:?}\n{o}\n{e}"
        );
        let pki = Pki { dir };
        for f in [
            pki.ca(),
            pki.server_cert(),
            pki.server_key(),
            pki.client_cert(),
            pki.client_key(),
        ] {
            assert!(f.is_file(), "snigate certs did not write {}", f.display());
        }
        pki
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn ca(&self) -> PathBuf {
        self.path().join("ca.crt")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.path().join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.path().join("server.key")
    }
    pub fn client_cert(&self) -> PathBuf {
        self.path().join("client.crt")
    }
    pub fn client_key(&self) -> PathBuf {
        self.path().join("client.key")
    }
}

/// Render a path for a YAML/conninfo value (tempdir paths contain no quotes or spaces).
pub fn p(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_owned()
}
