"""What HAProxy itself counts on a load balancer, and a prober any lab host can run.

HAProxy's admin socket (`show stat`, `show info`) is read with python3 on the load balancer as
root; settings are read from the live /etc/haproxy/haproxy.cfg, so the tests check what is
deployed, whatever the defaults are. wrk's report is parsed by lab/bench.py's parser (unit-tested).
"""

import json
import os
import re
import sys
import time

from conftest import SITE, holders, site_address

sys.path.insert(0, os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."), "lab"))
import bench  # noqa: E402  pylint: disable=wrong-import-position

ADMIN = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/run/haproxy/admin.sock")
s.sendall(sys.argv[1].encode() + b"\n")
sys.stdout.write(b"".join(iter(lambda: s.recv(65536), b"")).decode())
"""

# The site's responses by class, as a frontend counts them.
CLASSES = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")

# One request after another (a new TLS connection each, as a browser opening the site) for
# `seconds` after `delay`, one every `interval`; each line: [status or error, seconds it took].
PROBE = r"""
import json, ssl, sys, time, urllib.error, urllib.request
url, delay, seconds, interval, timeout, out = sys.argv[1], *map(float, sys.argv[2:6]), sys.argv[6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
time.sleep(delay)
end = time.time() + seconds
with open(out, "w") as f:
    while True:
        start = time.time()
        try:
            code = urllib.request.urlopen(url, context=ctx, timeout=timeout).status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except Exception as exc:  # the failure's name is the result
            code = type(exc).__name__
        f.write(json.dumps([code, round(time.time() - start, 3)]) + "\n")
        f.flush()
        if time.time() >= end:
            break
        time.sleep(max(0.0, interval - (time.time() - start)))
    f.write('"done"\n')
"""
SITE_URL = f"https://{SITE}:443/"  # wrk resolves no service names: the image has no /etc/services


def admin(lb, command):
    """The answer of HAProxy's admin socket to one command."""
    with lb.sudo():
        return lb.check_output("python3 -c %s %s", ADMIN, command)


def stats(lb):
    """`show stat` as {(proxy, server or FRONTEND/BACKEND): {column: value}}."""
    lines = admin(lb, "show stat").strip().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = {}
    for line in lines[1:]:
        if line:
            row = dict(zip(header, line.split(",")))
            rows[(row["pxname"], row["svname"])] = row
    return rows


def info(lb):
    """`show info` as {field: value}."""
    return dict(line.split(": ", 1) for line in admin(lb, "show info").splitlines() if ": " in line)


def num(row, column):
    return int(row.get(column) or 0)


def delta(before, after, key, column):
    return num(after[key], column) - num(before[key], column)


def setting(lb, pattern):
    """The first group of a regular expression in the live haproxy.cfg."""
    with lb.sudo():
        config = lb.check_output("cat /etc/haproxy/haproxy.cfg")
    match = re.search(pattern, config, re.M)
    assert match, f"haproxy.cfg has no {pattern!r}"
    return match.group(1)


def seconds(haproxy_time):
    """An HAProxy time (5s, 500ms, 1m) in seconds."""
    value, unit = re.match(r"^(\d+)(us|ms|s|m|h|d)?$", haproxy_time).groups()
    return int(value) * {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * 1.0


def start_probe(host, out, *, delay=0.0, seconds_=10.0, interval=1.0, timeout=10.0, url=SITE_URL):
    """Start the prober on a host, in the background."""
    host.run_test(f"cat > /tmp/probe.py <<'EOF'\n{PROBE}\nEOF")
    host.run_test(f"setsid -f python3 /tmp/probe.py {url} {delay} {seconds_} {interval} {timeout} {out} "
                  "> /dev/null 2>&1 < /dev/null")


def probe_results(host, out, wait):
    """Wait for a prober to finish; its [status, seconds] pairs."""
    deadline = time.time() + wait
    while time.time() < deadline and not host.file(out).contains('^"done"'):
        time.sleep(0.5)
    lines = [json.loads(line) for line in host.file(out).content_string.splitlines()]
    assert lines and lines[-1] == "done", f"the prober on {host} did not finish: {lines[-3:]}"
    return lines[:-1]


def wrk(host, connections, duration, *, close=False, timeout=10, url=SITE_URL, threads=2):
    """wrk from a host (open-file limit raised for many connections); its parsed report."""
    header = "-H 'Connection: close' " if close else ""
    out = host.check_output(f"bash -c \"ulimit -n $(ulimit -Hn); wrk -t{threads} -c{connections} -d{duration}s "
                            f"--timeout {timeout}s --latency {header}{url}\"")
    return bench.parse_wrk(out)


def lb_behind_site(client, lbs):
    """The load balancer the site's name leads the client to (one of `lbs`: {name: host}): the one
    whose address it is, or the one holding it (the load balancers' floating address)."""
    address = site_address(client)
    for name, lb in lbs.items():
        if lb.ansible.get_variables()["ansible_host"] == address:
            return name, lb
    held = [name for name in holders(address) if name in lbs]
    assert len(held) == 1, f"{SITE_URL} leads to {address}, held by {held or 'no load balancer'}"
    return held[0], lbs[held[0]]
