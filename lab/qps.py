#!/usr/bin/env python3
"""Live requests per second of the site, from the monitoring host's Prometheus (`make qps`).

Each line: every web server's rate as nginx counts it (every request it served, health checks
and status reads included) and as the load balancer counts the responses it got from it, then
the load balancer's own rate of client requests. The queries are printed with --queries and
in the README.

    python3 lab/qps.py                       # the lab: Prometheus of the inventory's monitoring host
    python3 lab/qps.py --url http://HOST:9090 --once
    python3 lab/qps.py --plot docs/qps.svg --minutes 3   # the last minutes as an SVG chart
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


def _results(url, endpoint, params, timeout):
    """Ask Prometheus's HTTP API; its results, each keyed by its only label value ("" for a sum)."""
    full = f"{url.rstrip('/')}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(full, timeout=timeout) as response:
            body = json.load(response)
    except (OSError, ValueError) as exc:
        raise QpsError(f"cannot query Prometheus at {url}: {exc}") from exc
    if body.get("status") != "success":
        raise QpsError(f"Prometheus refused {params['query']!r}: {body.get('error', body)}")
    return [(next(iter(r["metric"].values()), ""), r) for r in body["data"]["result"]]


def query(url, promql, timeout=10):
    """Instant query: {label value: rate}."""
    return {key: float(r["value"][1]) for key, r in _results(url, "query", {"query": promql}, timeout)}


def query_range(url, promql, start, end, step, timeout=20):
    """Range query: {label value: [(timestamp, rate)]}."""
    params = {"query": promql, "start": start, "end": end, "step": step}
    return {key: [(float(t), float(v)) for t, v in r["values"]]
            for key, r in _results(url, "query_range", params, timeout)}


def plot(series, title, width=760, height=320):
    """An SVG line chart of {name: [(t, value)]}, stdlib only."""
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    points = [p for values in series.values() for p in values]
    if not points:
        raise QpsError("no samples in that period: is Prometheus scraping?")
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    peak = max(max(v for _, v in points), 1.0)
    step = next(m * 10 ** e for e in range(7) for m in (1, 2, 2.5, 5) if m * 10 ** e * 4 >= peak)
    top = step * 4  # four round gridlines above zero
    left, right, upper, lower = 60, 150, 30, 40
    plot_w, plot_h = width - left - right, height - upper - lower

    def x(t):
        """The chart's x for a time."""
        return left + (t - t0) / max(t1 - t0, 1) * plot_w

    def y(v):
        """The chart's y for a rate."""
        return upper + plot_h - v / top * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14">{title}</text>']
    for i in range(5):
        v = top * i / 4
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for i in range(5):
        t = t0 + (t1 - t0) * i / 4
        out.append(f'<text x="{x(t):.1f}" y="{upper + plot_h + 18}" text-anchor="middle">'
                   f'{time.strftime("%H:%M:%S", time.gmtime(t))}</text>')
    out.append(f'<text x="14" y="{upper + plot_h / 2}" transform="rotate(-90 14 {upper + plot_h / 2})" '
               'text-anchor="middle">requests per second</text>')
    for i, (name, values) in enumerate(sorted(series.items())):
        colour = colours[i % len(colours)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in values)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>'
                   f'<text x="{left + plot_w + 10}" y="{upper + 16 + 18 * i}" fill="{colour}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


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
    """`make qps`: print the rates every --interval seconds, once, the queries, or a chart."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Prometheus base URL (default: the inventory's monitoring host)")
    parser.add_argument("--inventory", default="inventory/lab")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between lines")
    parser.add_argument("--once", action="store_true", help="print one reading and exit")
    parser.add_argument("--queries", action="store_true", help="print the PromQL and exit")
    parser.add_argument("--plot", metavar="SVG", help="write a chart of the last --minutes to this file and exit")
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.queries:
        print("\n".join(f"{name}: {promql}" for name, promql in QUERIES.items()))
        return 0
    try:
        url = args.url or lab_url(args.inventory)
        if args.plot:
            end = time.time()
            start = end - args.minutes * 60
            series = {f"{name} (nginx)": values for name, values in
                      query_range(url, QUERIES["nginx"], start, end, 2).items()}
            series["load balancer"] = query_range(url, QUERIES["frontend"], start, end, 2).get("", [])
            Path(args.plot).write_text(plot(series, "HTTPS requests per second, per web server and at the load balancer"),
                                       encoding="utf-8")
            print(f"qps: wrote {args.plot}")
            return 0
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
