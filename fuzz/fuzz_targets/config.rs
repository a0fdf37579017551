//! Config text as the operator writes it: `gateway_from_str` and `sidecar_from_str` (parse
//! and validate, no file access).
//!
//! Properties: no panic, whether the text is YAML or not; every error renders, names the
//! file, and carries a fix; an accepted config has normalised, distinct server names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snigate::config::{gateway_from_str, sidecar_from_str, sni_name};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = std::path::Path::new("fuzz.yaml");
    match gateway_from_str(text, file) {
        Ok(config) => {
            let mut seen = std::collections::HashSet::new();
            for route in &config.routes {
                for name in &route.server_names {
                    assert_eq!(sni_name(name).as_deref(), Ok(name.as_str()));
                    assert!(seen.insert(name.clone()), "{name} served twice");
                }
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.yaml: "), "{shown}");
            assert!(shown.contains("fix: "), "{shown}");
        }
    }
    match sidecar_from_str(text, file) {
        Ok(config) => {
            for tunnel in &config.tunnels {
                assert_eq!(
                    sni_name(&tunnel.server_name).as_deref(),
                    Ok(tunnel.server_name.as_str())
                );
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("fuzz.yaml: "), "{shown}");
            assert!(shown.contains("fix: "), "{shown}");
        }
    }
});
