#!/usr/bin/env python3
"""`make bench`: figures a reviewer can rerun. Prints a table, writes the figures as JSON.

Never a pass/fail test: it measures, on this machine, in a lab of its own (containers
`bench-*`, network 172.30.30.0/24, the lab inventory's hosts):

1. Playbook cost: a full site.yml converge on fresh containers, a second (no-change) run and a
   `--tags certs` run; beside them the floor, the same packages installed with plain apt-get
   into fresh containers of the same images; and the ratios.
2. Serving: HTTPS requests per second and p50/p99 latency with wrk from `client` through the
   load balancer, against direct HTTPS from lb-01 to one web server (the reference), with
   keep-alive and with a new TLS handshake per request; then each tuning of TUNINGS before
   and after, in the same run; then the connection curve (CURVE_CONNECTIONS) through the load
   balancer with the settings from before the overload work (OVERLOAD_BEFORE) and after, and
   the knee of each curve.

The bench's client stands in for many visitors: it is on the rate limit's allow-list.

Each playbook's output (with ansible.posix.profile_tasks and profile_roles) is kept in
.cache/bench/<run>.log.

    python3 lab/bench.py [--json .cache/bench.json] [--duration 10] [--keep]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "bench"
SUBNET = "172.30.30"
STATE = ROOT / ".cache" / "bench"
SERVERS = ("lb-01", "web-01", "web-02")
WEB_01 = f"{SUBNET}.11"  # the reference web server, reached directly from lb-01
CLIENT = f"{SUBNET}.30"  # wrk's host


class BenchError(Exception):
    """A step of the benchmark failed; the message says which."""


def tool(name):
    return shutil.which(name) or str(Path(sys.executable).parent / name)


def sh(cmd, *, env=None, timeout=3600, check=True):
    """Run a command; (seconds it took, its output)."""
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout, check=False)
    took = time.monotonic() - started
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise BenchError(f"{' '.join(map(str, cmd[:4]))}... failed (rc {proc.returncode}):\n{tail}")
    return took, proc.stdout


def write_inventory():
    """The lab inventory, moved to the bench's own subnet, SSH key and fact cache."""
    inv = STATE / "inventory"
    if inv.exists():
        shutil.rmtree(inv)
    shutil.copytree(ROOT / "inventory" / "lab", inv, ignore=shutil.ignore_patterns("pki"))
    hosts = (inv / "hosts.yml").read_text().replace("172.30.10.", f"{SUBNET}.")
    hosts = re.sub(r"\n\s+lab_publish: \[[^\]]*\]", "", hosts)
    (inv / "hosts.yml").write_text(hosts)
    allvars = inv / "group_vars" / "all.yml"
    text = allvars.read_text().replace("172.30.10.", f"{SUBNET}.")
    text = re.sub(r"(?m)^lab_ssh_dir: .*$", f"lab_ssh_dir: {ROOT / '.lab' / PREFIX / 'ssh'}", text)
    text += ("\n# The bench's client stands in for many visitors at full speed: never rate limited.\n"
             f"haproxy_rate_limit_allow: [{CLIENT}]\n")
    allvars.write_text(text)
    return inv


def env():
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks,ansible.posix.profile_roles",
                PROFILE_TASKS_TASK_OUTPUT_LIMIT="40",
                ANSIBLE_CACHE_PLUGIN_CONNECTION=str(STATE / "facts"),
                PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def fresh_lab(inv):
    """Remove the bench's containers and fact cache, start fresh ones."""
    sh([sys.executable, "lab/labctl.py", "down", "--prefix", PREFIX])
    shutil.rmtree(STATE / "facts", ignore_errors=True)
    sh([sys.executable, "lab/labctl.py", "up", "--prefix", PREFIX, "--inventory", str(inv), "--no-publish"])


def playbook(inv, *args, log=None):
    """Run a playbook; (seconds, changed per host, its output). ``log``: keep its output in .cache/bench/."""
    took, out = sh([tool("ansible-playbook"), "-i", str(inv), *args], env=env())
    changed = {h: int(c) for h, c in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", out, re.M)}
    if log:
        (STATE / f"{log}.log").write_text(out)
    return round(took, 1), changed, out


CALLS = 40


def module_call_cost(inv, calls=CALLS):
    """Seconds per module call on the servers at once: the smallest task there is
    (ansible.builtin.ping, `calls` times on every server), so a run of N tasks per host cannot
    take less than about N times this."""
    book = STATE / "module-calls.yml"
    book.write_text(f"""---
- name: Bench | the cost of one module call on every server
  hosts: loadbalancers:webservers:db_primary:db_replica
  gather_facts: false
  tasks:
    - name: One ping, then {calls} more
      ansible.builtin.ping:
    - name: Timed pings
      ansible.builtin.ping:
      loop: "{{{{ range({calls}) | list }}}}"
""")
    took, _, out = playbook(inv, str(book))
    match = re.search(r"Timed pings -+ (\d+\.\d+)s", out)
    if not match:
        raise BenchError("the module-call playbook printed no time for its timed pings")
    return round(float(match.group(1)) / calls, 3)


def tasks_run(out):
    """Tasks a host really ran in a playbook (ok, not skipped), per host, from the recap."""
    return {host: int(ok) for host, ok in re.findall(r"^(\S+)\s+: ok=(\d+)", out, re.M) if host != "localhost"}


def docker_exec(host, command, timeout=1800):
    return sh(["docker", "exec", f"{PREFIX}-{host}", "bash", "-c", command], timeout=timeout)


def manual_packages(host):
    return set(docker_exec(host, "apt-mark showmanual")[1].split())


def floor(inv, packages):
    """Fresh containers; the same packages with plain apt-get on every server at once (without
    recommends, as the roles install them)."""
    fresh_lab(inv)
    base = {host: manual_packages(host) for host in SERVERS}

    def install(host):
        wanted = sorted(packages[host] - base[host])
        took, _ = docker_exec(host, "export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null && "
                              f"apt-get install -y -q --no-install-recommends {' '.join(wanted)} >/dev/null")
        return host, took, len(wanted)

    started = time.monotonic()
    with ThreadPoolExecutor(len(SERVERS)) as pool:
        results = list(pool.map(install, SERVERS))
    return round(time.monotonic() - started, 1), {h: {"seconds": round(t, 1), "packages": n} for h, t, n in results}


WRK_LINE = re.compile(r"Requests/sec:\s+([0-9.]+)")
LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s)\s*$", re.M)
WRK_REQUESTS = re.compile(r"^\s*(\d+) requests in ", re.M)
WRK_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)", re.M)
WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(out):
    """wrk's report: requests per second, p50/p99 latency in ms and its error lines; and, as
    numbers, the requests it completed, those answered other than 2xx/3xx and its socket
    errors (connect, read, write, timeout)."""
    rps = WRK_LINE.search(out)
    lat = {p: float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u] for p, v, u in LATENCY.findall(out)}
    requests = WRK_REQUESTS.search(out)
    if not rps or not requests or "50" not in lat or "99" not in lat:
        raise BenchError(f"wrk printed no figures:\n{out}")
    errors = re.findall(r"^\s*(Non-2xx or 3xx responses: \d+|Socket errors: .*)$", out, re.M)
    non_2xx = WRK_NON_2XX.search(out)
    socket = WRK_SOCKET.search(out)
    return {"rps": float(rps.group(1)), "p50_ms": round(lat["50"], 2), "p99_ms": round(lat["99"], 2),
            "errors": "; ".join(errors), "requests": int(requests.group(1)),
            "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                      map(int, socket.groups() if socket else (0, 0, 0, 0))))}


def wrk(host, url, duration, connections, close, host_header=None, timeout=None):
    """One wrk run from a host (``timeout``: seconds before wrk counts a request as timed out)."""
    headers = (f"-H 'Host: {host_header}' " if host_header else "") + ("-H 'Connection: close' " if close else "")
    limit = f"--timeout {timeout}s " if timeout else ""
    _, out = docker_exec(host, f"wrk -t2 -c{connections} -d{duration}s {limit}--latency {headers}{url}",
                         timeout=duration + 60 + (timeout or 0))
    return parse_wrk(out)


MODES = {"keep-alive": False, "new TLS handshake per request": True}
LB_URL = "https://www.foobar.com:443/"

# Each tuning: what it changes, which play applies it, the path it is measured on, and the
# extra variables of its "before" and "after" (after: the roles' defaults, unless the
# comparison needs another setting held fixed on both sides).
TUNINGS = [
    {"name": "connection reuse to the web servers", "tags": "lb", "path": "lb",
     "before": {"haproxy_http_reuse": "never"}, "after": {}},
    {"name": "TLS session resumption to the web servers (http-reuse never on both sides, so every "
             "client connection opens a server connection)", "tags": "lb", "path": "lb",
     "before": {"haproxy_http_reuse": "never", "haproxy_backend_tls_session_reuse": False},
     "after": {"haproxy_http_reuse": "never"}},
    {"name": "nginx worker processes (1, then auto: one per CPU)", "tags": "web", "path": "direct",
     "before": {"nginx_worker_processes": 1}, "after": {}},
]


S_TIME = re.compile(r"(\d+) connections in (\d+) real seconds")


def parse_s_time(out):
    """`openssl s_time`'s report: connections per second and the share of resumed sessions.

    s_time prints one character per connection: `r` when the session was resumed, `*` (or the
    protocol's letter) when the handshake was a full one.
    """
    runs = S_TIME.findall(out)
    if not runs:
        raise BenchError(f"openssl s_time printed no figures:\n{out[-2000:]}")
    count, seconds = map(int, runs[-1])
    marks = sum(line.count("r") for line in out.splitlines() if line and set(line) <= set("r*t3"))
    return {"connections_per_s": round(count / max(seconds, 1), 1), "connections": count,
            "resumed_share": round(marks / count, 3) if count else 0.0}


def s_time(host, target, duration, reuse):
    """One `openssl s_time` run from a host: full handshakes (-new) or resumed ones (-reuse)."""
    mode = "-reuse" if reuse else "-new"
    _, out = docker_exec(host, f"openssl s_time -connect {target} -www / "
                               f"-time {duration} {mode} 2>&1", timeout=duration + 60)
    return parse_s_time(out)


def handshakes(duration):
    """TLS session resumption, as a client that resumes sees it: one connection at a time,
    a full handshake each (-new) against a resumed session each (-reuse)."""
    targets = {"through the load balancer": ("client", "www.foobar.com:443"),
               "direct to web-01 (reference)": ("lb-01", f"{WEB_01}:443")}
    results = {}
    for label, (host, target) in targets.items():
        for reuse in (False, True):
            name = f"{label}, {'resumed' if reuse else 'full'} handshake"
            try:
                results[name] = s_time(host, target, duration, reuse)
            except (BenchError, subprocess.TimeoutExpired) as exc:  # a figure missing, not the whole bench
                results[name] = {"error": str(exc)[:500]}
    return results


def serving_paths(duration, connections):
    """The two paths, each mode: (path, mode) -> wrk's figures."""
    return {
        "lb": lambda close: wrk("client", LB_URL, duration, connections, close),
        "direct": lambda close: wrk("lb-01", f"https://{WEB_01}:443/", duration, connections, close,
                                    host_header="www.foobar.com"),
    }


def serving(inv, duration, connections):
    """Both paths in both modes, then each tuning before and after, side by side."""
    # wrk is on the client (lab/support.yml); the reference runs from lb-01, which alone may
    # reach a web server's 443, so it gets wrk too (a bench container: nothing to keep clean).
    docker_exec("lb-01", "command -v wrk >/dev/null || (apt-get update -q >/dev/null && "
                         "DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null)")
    paths = serving_paths(duration, connections)
    runs = {f"{label}, {mode}": paths[path](close)
            for path, label in (("lb", "through the load balancer"), ("direct", "direct to web-01 (reference)"))
            for mode, close in MODES.items()}
    tunings = []
    for tuning in TUNINGS:
        result = {"name": tuning["name"], "path": tuning["path"]}
        for side in ("before", "after"):
            extra = tuning[side]
            playbook(inv, "site.yml", "--tags", tuning["tags"], *extra_vars(extra))
            result[side] = {"vars": extra, **{mode: paths[tuning["path"]](close) for mode, close in MODES.items()}}
        tunings.append(result)
    curve = connection_curve(inv, duration)
    playbook(inv, "site.yml", "--tags", "lb,web")
    return {"runs": runs, "tunings": tunings, "curve": curve, "handshakes": handshakes(duration)}


CURVE_CONNECTIONS = (100, 1000, 5000)
# The serving settings from before the overload work (issue 20), as -e: no per-server limit
# (a number no run reaches), HAProxy's frontend limit as large as the container's open-file limit
# let its old derived default be (about 9 500 for the process, as today's 2 x 4 500),
# a 30 s queue, health checks whose whole budget was `inter` with fall 2 and no watch of real
# traffic, no rate limit, and nginx's old sizes. Today's preflight refuses them (they are the
# bug: HAProxy may open more connections than nginx holds), so the bench also tells it that
# nginx holds them (nginx_max_clients), which is exactly the old configuration's mistake.
OVERLOAD_BEFORE = {
    "haproxy_server_maxconn": 100000, "haproxy_frontend_maxconn": 4500, "haproxy_queue_timeout": "30s",
    "haproxy_check_fall": 2, "haproxy_check_timeout": "2s", "haproxy_check_error_limit": 0,
    "haproxy_rate_limit_enabled": False,
    "nginx_worker_connections": 1024, "nginx_listen_backlog": 511, "nginx_keepalive_requests": 1000,
    "nginx_max_clients": 1000000,
}
CURVE_TIMEOUT_S = 30  # wrk's request timeout on the curve: past the old 30 s queue, nothing is cut short


def connection_curve(inv, duration):
    """Requests/s and p99 through the load balancer at each of CURVE_CONNECTIONS, before and
    after, each mode; the knee of each curve."""
    curve = {}
    for side, extra in (("before", OVERLOAD_BEFORE), ("after", {})):
        playbook(inv, "site.yml", "--tags", "lb,web", *extra_vars(extra), log=f"curve-{side}")
        curve[side] = {"vars": extra}
        for mode, close in MODES.items():
            points = {}
            for connections in CURVE_CONNECTIONS:
                try:
                    points[connections] = wrk("client", LB_URL, duration, connections, close, timeout=CURVE_TIMEOUT_S)
                except (BenchError, subprocess.TimeoutExpired) as exc:  # a point missing, not the whole bench
                    points[connections] = {"error": str(exc)[:500]}
            curve[side][mode] = {"points": points, "knee": knee(points)}
    return curve


def knee(points, gain=0.10):
    """The knee of a throughput curve {connections: wrk figures}: the connection count past
    which more connections add less than `gain` (10%) requests/s, only latency (None when a
    point is missing). The last point when throughput still rises at the end."""
    ordered = sorted(points.items())
    if not ordered or any("rps" not in figures for _, figures in ordered):
        return None
    for (connections, figures), (_, following) in zip(ordered, ordered[1:]):
        if following["rps"] < figures["rps"] * (1 + gain):
            return connections
    return ordered[-1][0]


def extra_vars(values):
    """`-e` arguments for a dict of variables (JSON keeps their types)."""
    return ["-e", json.dumps(values)] if values else []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / ".cache" / "bench.json"))
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    args = parser.parse_args(argv)
    STATE.mkdir(parents=True, exist_ok=True)
    figures = {"machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}}
    try:
        inv = write_inventory()
        fresh_lab(inv)
        playbook(inv, "lab/support.yml")
        call_s = module_call_cost(inv)
        full, changed_full, _ = playbook(inv, "site.yml", log="full")
        again, changed_again, again_out = playbook(inv, "site.yml", log="no-change")
        again_roles = role_times(again_out)
        certs, changed_certs, _ = playbook(inv, "site.yml", "--tags", "certs", log="certs")
        packages = {host: manual_packages(host) for host in SERVERS}
        figures["serving"] = serving(inv, args.duration, args.connections)
        floor_total, floor_hosts = floor(inv, packages)
        figures["playbook"] = {
            "full_converge_s": full, "no_change_run_s": again, "certs_run_s": certs, "apt_floor_s": floor_total,
            "apt_floor_per_host": floor_hosts, "no_change_roles": again_roles,
            "module_call_s": call_s, "no_change_tasks": tasks_run(again_out), "changed": {"full": changed_full, "no_change": changed_again,
                                                           "certs": changed_certs},
            "ratios": {"full / floor": round(full / floor_total, 2), "no-change / full": round(again / full, 2),
                       "certs / no-change": round(certs / again, 2)}}
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            sh([sys.executable, "lab/labctl.py", "down", "--prefix", PREFIX], check=False)
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))
    print(f"\nfigures: {args.json}")
    return 0


def report(figures):
    p = figures["playbook"]
    lines = ["playbook cost (seconds)",
             f"  full converge, fresh containers   {p['full_converge_s']:>8}",
             f"  second run, no change             {p['no_change_run_s']:>8}   changed: {p['changed']['no_change']}",
             f"  --tags certs                      {p['certs_run_s']:>8}",
             f"  floor: same packages, apt-get     {p['apt_floor_s']:>8}"]
    lines += [f"  {name:<34}{value:>8}" for name, value in p["ratios"].items()]
    if p.get("module_call_s"):
        busiest = max(p["no_change_tasks"].values())
        lines += [f"  one module call (ping, every server)  {p['module_call_s']:>5}   "
                  f"x {busiest} tasks of the busiest host = {p['module_call_s'] * busiest:.1f} s"]
    if p.get("no_change_roles"):
        lines += ["", "no-change run, seconds per role (ansible.posix.profile_roles)"]
        lines += [f"  {role:<34}{took:>8}" for role, took in p["no_change_roles"].items()]
    serving = figures["serving"]
    lines += ["", f"serving ({'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8})"]
    lines += [f"  {name:<58}{r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']}"
              for name, r in serving["runs"].items()]
    for tuning in serving["tunings"]:
        lines += ["", f"tuning: {tuning['name']} ({tuning['path']})"]
        for side in ("before", "after"):
            for mode in MODES:
                r = tuning[side][mode]
                label = f"{side} {json.dumps(tuning[side]['vars'])}, {mode}"
                lines.append(f"  {label:<58}{r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']}")
    if serving.get("curve"):
        lines += curve_report(serving["curve"])
    if serving.get("handshakes"):
        lines += ["", f"TLS handshakes, one connection at a time (openssl s_time) {'conn/s':>8} {'resumed':>8}"]
        lines += [f"  {name:<58}{r['connections_per_s']:>10.1f} {r['resumed_share']:>8.0%}" if "error" not in r
                  else f"  {name:<58} failed: {r['error'].splitlines()[0]}" for name, r in serving["handshakes"].items()]
    return "\n".join(lines)


def curve_report(curve):
    """The connection curve, before and after side by side, and each curve's knee."""
    lines = ["", "connection curve through the load balancer: before (settings of OVERLOAD_BEFORE) and after "
                 "(the roles' defaults)",
             f"  {'mode':<32}{'connections':>12}{'before req/s':>14}{'p99 ms':>10}{'after req/s':>14}{'p99 ms':>10}"]

    def cell(figures):
        if "rps" not in figures:
            return f"{'failed':>14}{'':>10}"
        return f"{figures['rps']:>14.0f}{figures['p99_ms']:>10.2f}"
    for mode in MODES:
        for connections in CURVE_CONNECTIONS:
            before = curve["before"][mode]["points"][connections]
            after = curve["after"][mode]["points"][connections]
            errors = "; ".join(f"{side}: {f.get('errors') or f.get('error', '')}" for side, f in
                               (("before", before), ("after", after)) if f.get("errors") or f.get("error"))
            lines.append(f"  {mode:<32}{connections:>12}{cell(before)}{cell(after)}  {errors}".rstrip())
        lines.append(f"  {'':<32}knee: before at {curve['before'][mode]['knee']} connections, "
                     f"after at {curve['after'][mode]['knee']}")
    return lines


ROLE_LINE = re.compile(r"^(\S.*?) -+ (\d+\.\d+)s$", re.M)


def role_times(out):
    """ansible.posix.profile_roles' recap: role (or module, outside roles) -> seconds, slowest first."""
    recap = out.partition("ROLES RECAP")[2].partition("~~~~")[0]
    if not recap:
        raise BenchError("the playbook printed no ROLES RECAP (is ansible.posix.profile_roles enabled?)")
    return {name: float(took) for name, took in ROLE_LINE.findall(recap)}


if __name__ == "__main__":
    sys.exit(main())
