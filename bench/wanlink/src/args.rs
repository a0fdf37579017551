//! Command line of the link: what to listen on, where to connect, and the link's shape.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Printed on a usage error.
pub const USAGE: &str = "\
usage: wanlink --route LISTEN=TARGET [--route ...] [--rtt 30ms] [--window 6MiB]
               [--no-handshake] [--threads N] [--trace FILE]
  --route LISTEN=TARGET  accept on LISTEN (IP:PORT), relay each connection to TARGET
  --rtt D                round-trip time added (RTT/2 per direction): 30ms, 0.03s, 30 (ms)
  --window SIZE          bytes in flight per direction and connection: 6MiB, 512KiB, 0 = no cap
  --no-handshake         do not charge the TCP handshake (1 RTT) to new connections
  --threads N            runtime worker threads (default: one per CPU)
  --trace FILE           write a line per delivery: connection, direction, ms, bytes|FIN|RST";

/// One listener and the address its connections are relayed to.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

/// The link as configured.
#[derive(Clone, Debug)]
pub struct Config {
    pub routes: Vec<Route>,
    pub rtt: Duration,
    /// Bytes read but not yet acknowledged, per direction of a connection; None: no cap.
    pub window: Option<usize>,
    /// Charge the TCP handshake: a new connection's first bytes leave one RTT late.
    pub handshake: bool,
    pub threads: Option<usize>,
    pub trace: Option<PathBuf>,
}

/// Linux's default maximum of tcp_rmem (net.ipv4.tcp_rmem[2] = 6 MiB): the most a receiver
/// advertises by default, so the window a default-tuned host gets across a long link.
const DEFAULT_WINDOW: usize = 6 << 20;

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut cfg = Config {
        routes: Vec::new(),
        rtt: Duration::from_millis(30),
        window: Some(DEFAULT_WINDOW),
        handshake: true,
        threads: None,
        trace: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--route" => cfg.routes.push(route(&value()?)?),
            "--rtt" => cfg.rtt = duration(&value()?)?,
            "--window" => cfg.window = Some(size(&value()?)?).filter(|&w| w > 0),
            "--no-handshake" => cfg.handshake = false,
            "--trace" => cfg.trace = Some(value()?.into()),
            "--threads" => {
                let v = value()?;
                let n = v.parse().ok().filter(|&n: &usize| n > 0);
                cfg.threads =
                    Some(n.ok_or_else(|| format!("--threads {v}: not a positive number"))?);
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    if cfg.routes.is_empty() {
        return Err("no --route given".into());
    }
    Ok(cfg)
}

fn route(v: &str) -> Result<Route, String> {
    let (listen, target) = v
        .split_once('=')
        .ok_or_else(|| format!("--route {v}: expected LISTEN=TARGET"))?;
    let addr = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|e| format!("--route {v}: '{s}' is not IP:PORT ({e})"))
    };
    Ok(Route {
        listen: addr(listen)?,
        target: addr(target)?,
    })
}

fn duration(v: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        (v, 1e-3)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .and_then(|x| Duration::try_from_secs_f64(x * scale).ok())
        .ok_or_else(|| format!("--rtt {v}: expected a duration such as 30ms or 0.03s"))
}

fn size(v: &str) -> Result<usize, String> {
    let units = [
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(suffix, scale)| v.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((v, 1));
    number
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("--window {v}: expected a size such as 6MiB, 512KiB or 0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(duration("30ms").unwrap(), Duration::from_millis(30));
        assert_eq!(duration("0.08s").unwrap(), Duration::from_millis(80));
        assert_eq!(duration("10").unwrap(), Duration::from_millis(10));
        assert!(duration("-1ms").is_err());
        assert_eq!(size("6MiB").unwrap(), 6 << 20);
        assert_eq!(size("512K").unwrap(), 512 << 10);
        assert!(size("lots").is_err());
    }

    #[test]
    fn window_zero_is_no_cap() {
        let args = ["--route", "127.0.0.1:1=127.0.0.1:2", "--window", "0"].map(String::from);
        let cfg = parse(args).unwrap();
        assert_eq!(cfg.window, None);
        assert!(parse(["--rtt".to_string()]).is_err());
    }
}
