#!/usr/bin/env python3
"""Live requests per second of the site, from the monitoring host's Prometheus (`make qps`).

Each line: every web server's rate as nginx counts it (every request it served, health checks
and status reads included) and as the load balancer counts the responses it got from it, then
the load balancer's own rate of client requests. The queries are printed with --queries and
in the README.

    python3 lab/qps.py                       # the lab: Prometheus of the inventory's monitoring host
    python3 lab/qps.py --url http://HOST:9090 --once
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

WINDOW = "15s"
QUERIES = {
    "nginx": f"sum by (instance) (rate(nginx_http_requests_total[{WINDOW}]))",
    "backend": f'sum by (server) (rate(haproxy_server_http_responses_total{{proxy="web"}}[{WINDOW}]))',
    "frontend": f'sum(rate(haproxy_frontend_http_requests_total{{proxy="https-in"}}[{WINDOW}]))',
}


class QpsError(Exception):
    """Prometheus could not be asked or did not answer a query."""


def query(url, promql, timeout=10):
    """Instant query: {label value: rate}, keyed by the result's only label (or "" for a sum)."""
    full = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(full, timeout=timeout) as response:
            body = json.load(response)
    except (OSError, ValueError) as exc:
        raise QpsError(f"cannot query Prometheus at {url}: {exc}") from exc
    if body.get("status") != "success":
        raise QpsError(f"Prometheus refused {promql!r}: {body.get('error', body)}")
    rates = {}
    for result in body["data"]["result"]:
        labels = list(result["metric"].values())
        rates[labels[0] if labels else ""] = float(result["value"][1])
    return rates


def sample(url):
    """One reading of every query."""
    return {name: query(url, promql) for name, promql in QUERIES.items()}


def render(reading, stamp=None):
    """The table of one reading, as text."""
    stamp = stamp or time.strftime("%H:%M:%S")
    servers = sorted(set(reading["nginx"]) | set(reading["backend"]))
    lines = [f"{stamp}  requests per second over the last {WINDOW}",
             f"{'web server':<16}{'nginx':>10}{'via LB':>10}"]
    lines += [f"{name:<16}{reading['nginx'].get(name, 0.0):>10.1f}{reading['backend'].get(name, 0.0):>10.1f}"
              for name in servers]
    lines.append(f"{'load balancer':<16}{reading['frontend'].get('', 0.0):>10.1f}")
    return "\n".join(lines)


def lab_url(inventory):
    """Prometheus of the first host of the inventory's `monitoring` group."""
    try:
        tool = shutil.which("ansible-inventory") or str(Path(sys.executable).parent / "ansible-inventory")
        out = subprocess.run([tool, "-i", inventory, "--list"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise QpsError(f"cannot read inventory {inventory}: {exc}") from exc
    data = json.loads(out)
    hosts = data.get("monitoring", {}).get("hosts", [])
    if not hosts:
        raise QpsError(f"inventory {inventory} has no host in group 'monitoring'")
    address = data["_meta"]["hostvars"][hosts[0]].get("ansible_host", hosts[0])
    return f"http://{address}:9090"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Prometheus base URL (default: the inventory's monitoring host)")
    parser.add_argument("--inventory", default="inventory/lab")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between lines")
    parser.add_argument("--once", action="store_true", help="print one reading and exit")
    parser.add_argument("--queries", action="store_true", help="print the PromQL and exit")
    args = parser.parse_args(argv)
    if args.queries:
        print("\n".join(f"{name}: {promql}" for name, promql in QUERIES.items()))
        return 0
    try:
        url = args.url or lab_url(args.inventory)
        while True:
            print(render(sample(url)), flush=True)
            if args.once:
                return 0
            print()
            time.sleep(args.interval)
    except QpsError as exc:
        print(f"qps: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
