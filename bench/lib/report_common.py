"""What bench/lib/report.py and bench/lib/wan_report.py share: their command line and the
run's metadata, the peers and the best of them for a metric, and where a report is written."""
import argparse
import shutil
from pathlib import Path

PEERS = ["stunnel", "haproxy", "nginx"]


def arguments():
    """The parsed command line (--raw, --meta, --out, --stamp) and the .meta file's
    key=value lines as a dict."""
    p = argparse.ArgumentParser()
    p.add_argument("--raw", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stamp", required=True)
    a = p.parse_args()
    meta = dict(line.split("=", 1) for line in Path(a.meta).read_text().splitlines() if "=" in line)
    return a, meta


def best_peer(values, higher):
    """(value, peer) of the best peer with a value in `values` (chain -> value or None);
    (None, None) when no peer has one."""
    cands = [(values[p], p) for p in PEERS if values.get(p) is not None]
    return (max if higher else min)(cands) if cands else (None, None)


def publish(out, name, stamp, md):
    """Writes the markdown as OUT/<name><stamp>.md and as OUT/<name>latest.md; returns OUT."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}{stamp}.md").write_text(md)
    shutil.copyfile(out / f"{name}{stamp}.md", out / f"{name}latest.md")
    return out
