"""lab/bench.py's pure half: the parsers of what the tools print (wrk, openssl s_time, the
playbook recaps of ansible.posix.profile_tasks and profile_roles), the knee of a throughput
curve, and the report printed at the end. No command is run here (lab/bench.py runs them).
"""

import json
import re

MODES = {"keep-alive": False, "new TLS handshake per request": True}
CURVE_CONNECTIONS = (100, 1000, 5000)


class BenchError(Exception):
    """A step of the benchmark failed; the message says which."""


def tasks_run(out):
    """Tasks a host really ran in a playbook (ok, not skipped), per host, from the recap."""
    return {host: int(ok) for host, ok in re.findall(r"^(\S+)\s+: ok=(\d+)", out, re.M) if host != "localhost"}


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


def report(figures):
    """The table printed at the end of `make bench`, from the figures written as JSON."""
    p = figures["playbook"]
    lines = ["playbook cost (seconds)",
             f"  full converge, fresh containers   {p['full_converge_s']:>8}",
             f"  second run, no change             {p['no_change_run_s']:>8}   changed: {p['changed']['no_change']}",
             f"  --tags certs                      {p['certs_run_s']:>8}",
             f"  floor: same packages, apt-get     {p['apt_floor_s']:>8}"]
    if p.get("apt_floor_as_converged_s"):
        hosts = p["apt_floor_as_converged_per_host"]
        busiest = max(hosts, key=lambda host: sum(hosts[host]["seconds"].values()))
        lines += [f"  floor as converged                {p['apt_floor_as_converged_s']:>8}   (busiest, {busiest}: "
                  + ", ".join(f"{step} {took}" for step, took in hosts[busiest]["seconds"].items())
                  + f"; {hosts[busiest]['upgraded']} packages updated)",
                  f"  lower bound of a full converge    {p['full_lower_bound_s']:>8}   (floor as converged + "
                  f"{p['full_changed_most']} changed tasks x {p['module_call_one_server_s']} s, one module call "
                  "on one server)"]
    lines += [f"  {name:<34}{value:>8}" for name, value in p["ratios"].items()]
    if p.get("module_call_s"):
        busiest = max(p["no_change_tasks"].values())
        lines += [f"  one module call (ping, every server)  {p['module_call_s']:>5}   "
                  f"x {busiest} tasks of the busiest host = {p['module_call_s'] * busiest:.1f} s"]
    if p.get("by_size"):
        size = p["by_size"]
        lines += ["", "converge by site size (seconds)        servers      full   no-change   peak MiB",
                  f"  the seed's site                      {size['seed']['servers']:>7}{size['seed']['full_converge_s']:>10}"
                  f"{size['seed']['no_change_run_s']:>12}{size['seed'].get('peak_mb', '-'):>11}",
                  f"  the lab's site                       {size['lab']['servers']:>7}{size['lab']['full_converge_s']:>10}"
                  f"{size['lab']['no_change_run_s']:>12}{size['lab'].get('peak_mb', '-'):>11}",
                  f"  each added server ({', '.join(size['added'])})".ljust(45)
                  + f"{size['per_added_server_s']['full']:>10}{size['per_added_server_s']['no_change']:>12}"]
    if p.get("no_change_roles"):
        lines += ["", "no-change run, seconds per role (ansible.posix.profile_roles)"]
        lines += [f"  {role:<34}{took:>8}" for role, took in p["no_change_roles"].items()]
    serving = figures["serving"]
    lines += ["", f"serving ({'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8})"]
    if serving.get("site_address_holder"):
        lines.append(f"  (through the load balancer: to the site's floating address {serving['site_address']}, "
                     f"held by {serving['site_address_holder']})")
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
    if figures.get("backup"):
        lines += backup_report(figures["backup"])
    return "\n".join(lines)


def curve_report(curve):
    """The connection curve, before and after side by side, and each curve's knee."""
    lines = ["", "connection curve through the load balancer: before (settings of OVERLOAD_BEFORE) and after "
                 "(the roles' defaults)",
             f"  {'mode':<32}{'connections':>12}{'before req/s':>14}{'p99 ms':>10}{'after req/s':>14}{'p99 ms':>10}"]

    def cell(figures):
        """One side of a row: requests/s and p99, or `failed`."""
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


def binlog_total(sizes, first):
    """Bytes of a binary log history from the file ``first`` on: ``sizes`` {file name: bytes}.
    The names share one prefix and a fixed-width counter, so they sort in the order written."""
    return sum(size for name, size in sizes.items() if name >= first)


def archive_lag(samples):
    """The binary log archive's lag under a write load, from ``samples``: (seconds, bytes the
    primary had written, bytes the archive held), in time order, the primary read first.

    The lag in bytes is the difference. The lag in seconds at a sample is how long ago the
    primary had written what the archive holds then (linear between the primary's samples);
    0 when the archive holds everything. Returns the largest and the median of each, and the
    sample count."""
    if not samples:
        raise BenchError("the archive's lag was never sampled")
    lags_b, lags_s = [], []
    for when, written, held in samples:
        lags_b.append(max(0, written - held))
        if held >= written:
            lags_s.append(0.0)
            continue
        reached = samples[0][0]  # when the primary had first written `held` bytes (at the latest)
        for (t0, p0, _), (t1, p1, _) in zip(samples, samples[1:]):
            if p1 >= held > p0:
                reached = t0 + (held - p0) / (p1 - p0) * (t1 - t0)
                break
        lags_s.append(max(0.0, when - reached))

    def median(values):
        """The middle value (the lower of the two middle ones)."""
        return sorted(values)[(len(values) - 1) // 2]
    return {"max_bytes": max(lags_b), "median_bytes": median(lags_b),
            "max_s": round(max(lags_s), 2), "median_s": round(median(lags_s), 2), "samples": len(samples)}


def backup_report(b):
    """The database backup section of the report (figures of lab/bench_backup.py)."""
    mb = 1024 * 1024
    lines = ["", f"database backup and restore: {b['data_bytes'] / mb:.0f} MB of generated rows "
                 f"({b['rows']} rows; data directory {b['datadir_bytes'] / mb:.0f} MB)",
             f"  {'':<62}{'seconds':>9}{'size MB':>9}"]
    for label, key in (("physical backup: mariadb-backup | zstd | age, to the backup host", "backup"),
                       ("  the same, as playbooks/db-backup.yml runs it", "backup_playbook"),
                       ("physical restore: playbooks/db-restore.yml, the latest state", "restore"),
                       ("logical: mariadb-dump --single-transaction | zstd", "dump"),
                       ("logical: reload of that dump (binary log on, replicas follow)", "reload")):
        step = b[key]
        size = f"{step['bytes'] / mb:>9.0f}" if step.get("bytes") else ""
        lines.append(f"  {label:<62}{step['seconds']:>9.1f}{size}")
    if b["restore"].get("roles"):
        lines.append("  the restore by role (backup: the primary restored; mysql: the replicas reseeded): " + "; ".join(
            f"{name} {took:.1f} s" for name, took in b["restore"]["roles"].items() if took >= 1))
    if b["restore"].get("slowest"):
        lines.append("  the restore's slowest tasks: " + "; ".join(
            f"{name} {took:.1f} s" for name, took in b["restore"]["slowest"].items()))
    lag = b["archive_lag"]
    lines += [f"binary log archive during the load ({b['load']['seconds']:.0f} s, "
              f"{b['load']['binlog_bytes'] / mb / max(b['load']['seconds'], 0.001):.1f} MB/s of binary log): "
              f"lag median {lag['median_bytes'] / mb:.1f} MB / {lag['median_s']} s, "
              f"max {lag['max_bytes'] / mb:.1f} MB / {lag['max_s']} s ({lag['samples']} samples); "
              f"caught up {lag['catch_up_s']} s after the load ended"]
    return lines
