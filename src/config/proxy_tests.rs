use super::*;

fn url(text: &str) -> ProxyUrl {
    ProxyUrl::parse(text).unwrap()
}

#[test]
fn reads_http_urls_with_and_without_scheme_credentials_and_brackets() {
    let plain = url("http://proxy.corp:3128");
    assert_eq!(plain.addr.to_string(), "proxy.corp:3128");
    assert!(plain.authorization.is_none());
    assert_eq!(
        url("HTTP://proxy.corp:3128/").addr.to_string(),
        "proxy.corp:3128"
    );
    assert_eq!(
        url("proxy.corp:3128").for_matcher(),
        "http://proxy.corp:3128"
    );
    assert_eq!(url("http://[::1]:3128").addr.host, "::1");
    let with = url("http://Aladdin:open%20sesame@10.0.0.1:8080");
    assert_eq!(with.addr.to_string(), "10.0.0.1:8080");
    // base64("Aladdin:open sesame"): percent-decoded before encoding, as curl does.
    let auth = with.authorization.unwrap();
    assert_eq!(auth, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    assert!(auth.is_sensitive());
    assert!(ProxySetting::parse("none").unwrap() == ProxySetting::None);
}

#[test]
fn refuses_what_it_cannot_use_and_says_why() {
    let cases = [
        ("", ProxyUrlError::Empty),
        (
            "https://u:pw@proxy.corp:3128",
            ProxyUrlError::Https("https://u:***@proxy.corp:3128".into()),
        ),
        (
            "socks5://proxy.corp:1080",
            ProxyUrlError::Scheme {
                url: "socks5://proxy.corp:1080".into(),
                scheme: "socks5".into(),
            },
        ),
        (
            "http://u:pw@proxy.corp",
            ProxyUrlError::NoPort("http://u:***@proxy.corp".into()),
        ),
        ("http://[::1]", ProxyUrlError::NoPort("http://[::1]".into())),
        (
            "http://proxy.corp:3128/path",
            ProxyUrlError::Malformed("http://proxy.corp:3128/path".into()),
        ),
        (
            "http://proxy.corp:99999",
            ProxyUrlError::Malformed("http://proxy.corp:99999".into()),
        ),
        (
            "http://proxy.corp:0",
            ProxyUrlError::Malformed("http://proxy.corp:0".into()),
        ),
        (
            "http://@proxy.corp:3128",
            ProxyUrlError::Malformed("http://@proxy.corp:3128".into()),
        ),
        (
            "http://u:p w@proxy.corp:3128",
            ProxyUrlError::Malformed("http://u:***@proxy.corp:3128".into()),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(ProxyUrl::parse(text).unwrap_err(), want, "{text}");
    }
}

#[test]
fn the_password_shows_nowhere_but_in_config_text() {
    let secret = "s3cr3t-Pw";
    let text = format!("http://user:{secret}@proxy.corp:3128");
    let setting = ProxySetting::parse(&text).unwrap();
    let shown = [
        setting.to_string(),
        format!("{setting:?}"),
        format!("{:?}", ProxySetting::parse(&text)),
        ProxySetting::parse(&format!("https://user:{secret}@p:1"))
            .unwrap_err()
            .to_string(),
        ProxySetting::parse(&format!("http://user:{secret}@p"))
            .unwrap_err()
            .to_string(),
        mask(&format!("not a url user:{secret}@ at all")),
    ];
    for s in shown {
        assert!(!s.contains(secret), "{s}");
    }
    assert_eq!(setting.to_string(), "http://user:***@proxy.corp:3128");
    let key = ProxyKey::from(text.as_str());
    assert_eq!(
        format!("{key:?}"),
        "ProxyKey(http://user:***@proxy.corp:3128)"
    );
    assert_eq!(serde_yaml::to_string(&key).unwrap().trim(), text);
}

#[test]
fn config_errors_name_the_key_and_the_fix() {
    let yaml = |top: &str, own: &str| {
        format!(
            "{top}\ntls: {{ca: ca.crt}}\ntunnels:\n  - {{name: r, listen: 127.0.0.1:0, \
             protocol: redis, connect: gw.example.test:443{own}}}\n"
        )
    };
    let file = std::path::Path::new("s.yaml");
    let error = |text: String| match crate::config::sidecar_from_str(&text, file) {
        Err(crate::config::ConfigError::Invalid { invalid, .. }) => invalid,
        other => panic!("{other:?}"),
    };
    let top = error(yaml("proxy: https://u:pw@p.corp:3128", ""));
    assert_eq!(top.key, "proxy");
    assert!(
        top.fix.starts_with("use the proxy's http:// address"),
        "{top}"
    );
    let own = error(yaml("", ", proxy: \"http://u:pw@p.corp\""));
    assert_eq!(own.key, "tunnels[0].proxy");
    assert_eq!(
        own.to_string(),
        "tunnels[0].proxy: `http://u:***@p.corp` has no port\n  \
        fix: write the proxy's port, e.g. http://proxy.example.com:3128"
    );
}
