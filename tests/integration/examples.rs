//! Every config the repository ships passes `--check`: the examples in config/, the configs
//! under deploy/ and the ConfigMaps in openshift/. Their certificate paths point into a
//! deployment that does not exist here, so each path is replaced by a certificate made for
//! the config's own names; nothing else in the text changes.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use snigate::config::{parse_str, AllowRule, GatewayConfig, SidecarConfig};

use crate::support::certs::{tempdir, write};
use crate::support::launch::check;
use crate::support::*;

/// (role, where it comes from, config text) of every shipped config.
fn shipped() -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let root = repo_root();
    for file in [
        yaml_files(&root.join("config")),
        yaml_files(&root.join("deploy")),
    ]
    .concat()
    {
        let role = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if ["gateway", "sidecar"].contains(&role) {
            let text = fs::read_to_string(&file).unwrap();
            found.push((role.into(), file.display().to_string(), text));
        }
    }
    for file in yaml_files(&root.join("openshift")) {
        let text = fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = serde_yaml::Value::deserialize(doc).unwrap();
            if doc["kind"] != "ConfigMap" {
                continue;
            }
            for role in ["gateway", "sidecar"] {
                if let Some(config) = doc["data"][format!("{role}.yaml")].as_str() {
                    let from = format!("{} ({role}.yaml)", file.display());
                    found.push((role.into(), from, config.into()));
                }
            }
        }
    }
    found
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files
}

/// The config text with each certificate path replaced by a file of a PKI made for its
/// server names and first `dns:` identity, and each login password file by one that holds a
/// password.
fn with_certificates(role: &str, text: &str, pki: &Path) -> String {
    let (names, client, mut paths) = match role {
        "gateway" => gateway_files(parse_str(text).unwrap()),
        _ => sidecar_files(parse_str(text).unwrap()),
    };
    let client = client.unwrap_or_else(|| CLIENT_NAME.to_owned());
    snigate::certs::write_dev_pki(pki, &names, &client).unwrap();
    paths.sort();
    paths.dedup_by(|a, b| a.0 == b.0);
    let mut text = text.to_owned();
    for (from, to) in paths {
        if to.starts_with("login") {
            write(pki, &to, "an example password\n");
        }
        let from = from.display().to_string();
        assert!(text.contains(&from), "{from} not in the text");
        text = text.replace(&from, &pki.join(to).display().to_string());
    }
    text
}

/// What a config names: (server names, first `dns:` identity, files → their stand-in).
type Named = (Vec<String>, Option<String>, Vec<(PathBuf, String)>);

fn gateway_files(config: GatewayConfig) -> Named {
    let names = config.routes.iter().flat_map(|r| r.server_names.clone());
    let dns = |a: AllowRule| match a {
        AllowRule::Dns(name) => Some(name),
        _ => None,
    };
    let client = config
        .routes
        .iter()
        .flat_map(|r| r.allow.clone())
        .find_map(dns);
    let tls = config.tls;
    let mut paths = vec![
        (tls.cert, "server.crt".into()),
        (tls.key, "server.key".into()),
    ];
    paths.extend(tls.client_ca.map(|ca| (ca, "ca.crt".into())));
    let logins = config.routes.iter().filter_map(|r| r.login.as_ref());
    paths.extend(
        logins
            .enumerate()
            .map(|(i, l)| (l.password_file.clone(), format!("login-{i}"))),
    );
    (names.collect(), client, paths)
}

fn sidecar_files(config: SidecarConfig) -> Named {
    let sni = |t: &snigate::config::TunnelConfig| match t.server_name.as_str() {
        "" => t.connect.host.clone(),
        name => name.to_owned(),
    };
    let names = config.tunnels.iter().map(sni).collect();
    let tls = config.tls;
    let mut paths = vec![(tls.ca, "ca.crt".into())];
    paths.extend(tls.cert.map(|c| (c, "client.crt".into())));
    paths.extend(tls.key.map(|k| (k, "client.key".into())));
    (names, None, paths)
}

#[test]
fn every_shipped_config_passes_check() {
    let shipped = shipped();
    let has = |role: &str| shipped.iter().filter(|(r, _, _)| r == role).count();
    assert!(
        has("gateway") >= 2 && has("sidecar") >= 3,
        "found only {shipped:#?}"
    );
    for (role, from, text) in &shipped {
        let dir = tempdir("snigate-example-");
        let config = with_certificates(role, text, &dir.path().join("pki"));
        let file = write(dir.path(), &format!("{role}.yaml"), &config);
        let out = check(role, &file);
        let (o, e) = texts(&out);
        assert!(
            out.status.success(),
            "{from} fails --check:\n{o}{e}\n{config}"
        );
    }
}
