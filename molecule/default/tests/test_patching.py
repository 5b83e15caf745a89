"""Patch day on the live servers.

- Every server takes Debian's security suite, has no security update pending, and the daily
  unattended-upgrades run really installs one (a package put back to the release's version
  comes back to the security suite's).
- playbooks/rolling-update.yml --check lists what would be upgraded, per server, and changes
  nothing.
- Drills: the rolling update under HTTPS load and committed writes (every web and database
  server patched and restarted: no request failed, no acknowledged write lost, each web server
  drained while its nginx restarted); and a server failing its health check after patching
  stops the run, the others untouched and serving.
"""

import json
import re
import shlex
import time

import pytest

from conftest import SERVERS, Load, get, names_of, playbook, recap, record_drill, site_address
from lbstats import admin

testinfra_hosts = SERVERS

# Finds, among the installed packages, the smallest set built from one source package whose
# installed version came from the security suite and which can be put back to the release's
# own version without touching anything else; prints "name=version ..." (empty: none).
FIND_DOWNGRADE = r"""
import re, subprocess, sys, apt
hold = [re.compile(h) for h in sys.argv[1:]]
def security(version):
    return any(o.archive.endswith("-security") for o in version.origins)
groups = {}
for pkg in apt.Cache():
    if pkg.is_installed and security(pkg.installed) and not any(h.match(pkg.name) for h in hold):
        groups.setdefault(pkg.installed.source_name, []).append(pkg)
choices = []
for source, pkgs in groups.items():
    wanted = []
    for pkg in pkgs:
        older = [v for v in pkg.versions if v < pkg.installed and not security(v) and v.downloadable]
        if not older:
            break
        wanted.append(f"{pkg.name}={max(older).version}")
    else:
        sim = subprocess.run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "install", "--allow-downgrades",
                              "--no-install-recommends", *wanted], capture_output=True, text=True)
        changes = [l for l in sim.stdout.splitlines() if l.startswith(("Inst", "Remv"))]
        if sim.returncode == 0 and len(changes) == len(wanted) and all(l.startswith("Inst") for l in changes):
            choices.append((len(wanted), sum(p.installed.installed_size for p in pkgs), wanted))
print(" ".join(min(choices)[2]) if choices else "")
"""


def security_pending(host):
    """Packages `apt-get -s upgrade` would take from the security suite."""
    out = host.check_output("apt-get -s -o Debug::NoLocking=1 upgrade")
    return sorted(set(re.findall(r"^Inst (\S+) .*-[Ss]ecurity", out, re.M)))


def test_the_security_suite_is_in_the_sources(host):
    codename = host.system_info.codename
    policy = host.check_output("apt-cache policy")
    for suite in (codename, f"{codename}-updates", f"{codename}-security"):
        assert re.search(rf"release .*n={re.escape(suite)},", policy), f"{suite} missing from apt's sources:\n{policy}"
    releases = re.findall(r"release .*o=Debian,.*n=([^,]+),", policy)
    assert sorted(set(releases)) == sorted({codename, f"{codename}-updates", f"{codename}-security"}), releases
    assert not re.search(r"^\s*deb\s", host.file("/etc/apt/sources.list").content_string, re.M)


def test_no_security_update_is_pending(host):
    with host.sudo():
        assert security_pending(host) == []


def test_the_daily_unattended_upgrade_installs_a_security_update(host):
    """Put a package back to the release's version, then run what apt's daily timer runs."""
    with host.sudo():
        # The packages the daily run leaves alone, as unattended-upgrades reads its own configuration.
        hold = re.findall(r'^Unattended-Upgrade::Package-Blacklist:: "(.*)";$',
                          host.check_output("apt-config dump Unattended-Upgrade::Package-Blacklist"), re.M)
        host.run_test("cat > /tmp/find_downgrade.py <<'EOF'\n%s\nEOF" % FIND_DOWNGRADE)
        wanted = host.check_output("python3 /tmp/find_downgrade.py " + " ".join(shlex.quote(h) for h in hold)).split()
        assert wanted, "no installed package from the security suite can be put back: nothing to prove this with"
        names = [w.split("=")[0] for w in wanted]
        before = {n: host.package(n).version for n in names}
        host.run_test("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "
                      "--no-install-recommends " + " ".join(shlex.quote(w) for w in wanted))
        assert set(names) <= set(security_pending(host)), f"{names} put back but not pending"
        run = host.run("unattended-upgrade -v")
        after = {n: host.package(n).version for n in names}
        # The apt collector counts pending updates every 15 minutes: had it counted while the
        # package was put back, SecurityUpdatesPending would stay pending until its next count,
        # into the later drills (the clean run waits for no alert pending). Count again now.
        host.run_test("systemctl start prometheus-node-exporter-apt.service")
    assert run.rc == 0, run.stdout + run.stderr
    assert after == before, f"unattended-upgrade left {after}, expected {before}\n{run.stdout}"
    with host.sudo():
        assert security_pending(host) == []


def test_rolling_update_check_lists_every_servers_upgrades_and_changes_nothing():
    run = playbook("--check", path="playbooks/rolling-update.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    servers = names_of("loadbalancers", "webservers", "db_primary", "db_replica")
    for name in servers:
        assert re.search(rf"{re.escape(name)}: \d+ package\(s\) to upgrade", run.stdout), f"{name} not listed"
    assert "is the primary now" not in run.stdout
    changed = recap(run)
    assert {name: changed.get(name) for name in servers} == dict.fromkeys(servers, 0), changed


# --- Drills -----------------------------------------------------------------------------------

# Commits numbered rows to whichever database server takes writes (the primary moves during a
# switchover, as an application behind a database proxy would follow it), recording a number
# only after COMMIT returned. Stops when the stop file appears.
WRITER = r"""
import os, sys, time, pymysql
password, out, hosts = sys.argv[1], sys.argv[2], sys.argv[3:]
conns = {}
def connect(h):
    return pymysql.connect(host=h, user="foobar", password=password, database="foobar",
                           ssl={"ca": "/etc/ssl/infra/ca.pem"}, connect_timeout=3, read_timeout=30, write_timeout=30)
with open(out, "w") as log:
    n, current = 0, hosts[0]
    while not os.path.exists(out + ".stop"):
        n += 1
        while not os.path.exists(out + ".stop"):
            try:
                if current not in conns:
                    conns[current] = connect(current)
                with conns[current].cursor() as cur:
                    cur.execute("INSERT INTO rolling_drill (n) VALUES (%s)", (n,))
                conns[current].commit()
                log.write(f"{time.time():.3f} {n} {current}\n"); log.flush(); os.fsync(log.fileno())
                break
            except Exception:
                conns.pop(current, None)
                current = hosts[(hosts.index(current) + 1) % len(hosts)]
                time.sleep(0.05)
    log.write("done\n")
"""

# Polls every load balancer's view of the web servers through HAProxy's runtime API: a line
# "time server status" each time a server's status changes; and whether this node holds the
# site's floating address: a line "time @address held|released" each time that changes.
POLLER = r"""
import os, socket, subprocess, sys, time
out, address, seen = sys.argv[1], sys.argv[2], {}
def stat():
    s = socket.socket(socket.AF_UNIX); s.connect("/run/haproxy/admin.sock"); s.sendall(b"show stat\n"); d = b""
    while (x := s.recv(65536)): d += x
    s.close()
    lines = d.decode().splitlines(); header = lines[0][2:].split(",")
    return [dict(zip(header, l.split(","))) for l in lines[1:] if l]
with open(out, "w") as log:
    while not os.path.exists(out + ".stop"):
        for row in stat():
            if row["pxname"] == "web" and row["svname"] != "BACKEND" and seen.get(row["svname"]) != row["status"]:
                seen[row["svname"]] = row["status"]
                log.write(f"{time.time():.3f} {row['svname']} {row['status']}\n"); log.flush()
        held = f" {address}/" in subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        if seen.get("@address") != held:
            seen["@address"] = held
            log.write(f"{time.time():.3f} @address {'held' if held else 'released'}\n"); log.flush()
        time.sleep(0.1)
"""


def started_at(server, unit):
    """When a unit's main process started (epoch seconds)."""
    out = server.check_output(f"systemctl show --timestamp=unix -p ExecMainStartTimestamp --value {unit}")
    return float(out.strip().lstrip("@"))


def intervals_between(changes, name, opens, closes, end):
    """[(from, to)] of the poller's lines about `name`: from the first state in `opens` until
    the state `closes` (an interval still open at the end closes at `end`)."""
    intervals, since = [], None
    for t, subject, status in changes:
        if subject != name:
            continue
        if status.split()[0] in opens and since is None:
            since = t
        elif status == closes and since is not None:
            intervals.append((since, t))
            since = None
    return intervals + ([(since, end)] if since is not None else [])


def drained_intervals(changes, server, end):
    """[(from, to)] during which a load balancer had `server` out of its pool by the runtime API:
    from its first DRAIN or MAINT state (set by the rolling update, never by a failed check)
    until it is UP again. A server only DOWN (its checks failing) was never drained."""
    return intervals_between(changes, server, ("DRAIN", "MAINT"), "UP", end)


def held_intervals(changes, end):
    """[(from, to)] during which a load balancer held the site's address (the poller's @address
    lines): the times at which the client's requests went through it."""
    return intervals_between(changes, "@address", ("held",), "released", end)


def carrier(request, held):
    """The load balancer that held the site's address from a request's start to its end (None:
    the address moved meanwhile, or no poller saw it held)."""
    started, ended = request[0], request[3]
    through = [lb for lb, intervals in held.items() if any(a <= started and ended <= b for a, b in intervals)]
    return through[0] if len(through) == 1 else None


def read_poll(lb):
    with lb.sudo():
        text = lb.file("/tmp/haproxy-states").content_string
    changes = [line.split(" ", 2) for line in text.splitlines()]
    # "UP 1/2": up, one check failed; "DOWN 1/2": down, one check passed.
    return [(float(t), name, "UP" if status.split()[0] == "UP" else status) for t, name, status in changes]


@pytest.fixture
def client():
    """The outsider of the lab, where the HTTPS load comes from."""
    return get("client")


@pytest.mark.drill
def test_rolling_update_under_load_fails_no_request_and_loses_no_write(client):
    webs, lbs = names_of("webservers"), [get(n) for n in names_of("loadbalancers")]
    primary_name, replicas = names_of("db_primary")[0], names_of("db_replica")
    # The writer runs on a replica (the database role gives it the client library).
    primary, writer_host = get(primary_name), get(replicas[-1])
    db_addresses = [get(n).ansible.get_variables()["ansible_host"] for n in [primary_name, *replicas]]
    password = primary.ansible.get_variables()["mysql_app_password"]
    with primary.sudo():
        primary.run_test("mariadb foobar -e 'CREATE TABLE IF NOT EXISTS rolling_drill "
                         "(id INT AUTO_INCREMENT PRIMARY KEY, n INT)'")
    for lb in lbs:
        with lb.sudo():
            lb.run_test("cat > /tmp/poller.py <<'EOF'\n%s\nEOF\nrm -f /tmp/haproxy-states.stop; "
                        "setsid -f python3 /tmp/poller.py /tmp/haproxy-states %s > /dev/null 2>&1 < /dev/null"
                        % (POLLER, site_address(client)))
    writer_host.run_test("cat > /tmp/writer.py <<'EOF'\n%s\nEOF\nrm -f /tmp/acked /tmp/acked.stop; "
                         "setsid -f python3 /tmp/writer.py %s /tmp/acked %s > /tmp/writer.err 2>&1 < /dev/null"
                         % (WRITER, password, " ".join(db_addresses)))
    load = Load(client, 900)
    time.sleep(3)

    began = time.time()
    run = playbook("-e", "rolling_update_force_restart=true", path="playbooks/rolling-update.yml")
    took = time.time() - began
    time.sleep(2)
    requests = load.finish(stop=True, ends=True)
    writer_host.run_test("touch /tmp/acked.stop")
    for lb in lbs:
        with lb.sudo():
            lb.run_test("touch /tmp/haproxy-states.stop")
    assert run.returncode == 0, run.stdout[-4000:]

    # Every request answered, by some web server.
    failed = [r for r in requests if r[1] != "200"]
    # Every acknowledged write is on the primary and on every replica.
    deadline = time.time() + 30
    while time.time() < deadline and not writer_host.file("/tmp/acked").contains("^done"):
        time.sleep(0.5)
    acked = [line.split() for line in writer_host.file("/tmp/acked").content_string.splitlines() if line[:1].isdigit()]
    numbers = {int(n) for _, n, _ in acked}
    with primary.sudo():
        present = {int(n) for n in primary.check_output("mariadb -N foobar -e 'SELECT n FROM rolling_drill'").split()}
    lost = sorted(numbers - present)
    gaps = [float(b[0]) - float(a[0]) for a, b in zip(acked, acked[1:])]
    # Each web server out of every load balancer's pool while its nginx restarted; and no request
    # reached it through a load balancer that had it out of its pool. A request's load balancer
    # is the one that held the site's address from its start to its end; the request counts as
    # sent in a drained time if it started after the drain began and ended before it was over
    # (the polls' margins aside).
    now, polls = time.time(), {lb.backend.host: read_poll(lb) for lb in lbs}
    held = {name: held_intervals(changes, now) for name, changes in polls.items()}
    carried = [(carrier(r, held), r) for r in requests]
    assert sum(1 for lb, _ in carried if lb) >= 0.9 * len(requests), f"requests with no known load balancer: {held}"
    drained = {}
    for web in webs:
        restarted, windows = started_at(get(web), "nginx"), {}
        for name, changes in polls.items():
            intervals = drained_intervals(changes, web, now)
            around = [(a, b) for a, b in intervals if a < restarted < b]
            assert around, f"{web}'s nginx restarted at {restarted:.1f} outside its drained times on {name} {intervals}"
            windows[name] = around[0]
        served = [(lb, r) for lb, r in carried
                  if lb and r[2] == web and windows[lb][0] + 1 < r[0] and r[3] < windows[lb][1] - 0.5]
        assert not served, f"{web} served {len(served)} requests while drained {windows}: {served[:5]}"
        drained[web] = round(min(b for _, b in windows.values()) - max(a for a, _ in windows.values()), 1)
    assert {r[2] for r in requests} == set(webs)
    per_server = dict(re.findall(r"(\S+) patched and serving again in ([0-9.]+) s", run.stdout))
    figures = {"requests": len(requests), "failed": len(failed), "acknowledged_writes": len(numbers),
               "lost_writes": len(lost), "longest_write_pause_s": round(max(gaps, default=0), 2),
               "drained_s": drained, "carried_by": {name: sum(1 for lb, _ in carried if lb == name) for name in held},
               "per_server_s": {k: float(v) for k, v in per_server.items()},
               "whole_run_s": round(took, 1)}
    record_drill("rolling update under load", figures)
    print(f"\nrolling update drill: {json.dumps(figures)}")
    assert not failed, f"{len(failed)} failed requests: {failed[:10]}"
    assert len(numbers) > 50 and not lost, f"acknowledged writes lost: {lost[:20]}"
    assert set(per_server) == set(names_of("loadbalancers", "webservers", "db_primary", "db_replica"))
    # Back as a converge leaves it: the inventory's primary writable with its semi-sync replicas.
    with primary.sudo():
        assert primary.check_output("mariadb -N -e 'SELECT @@global.read_only'") == "0"
        clients = primary.check_output("mariadb -N -e \"SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'\"")
    assert int(clients.split()[-1]) == len(replicas)


SABOTAGE = """[Service]
# A patch that breaks the server: after every start, its HTTPS port refuses the load balancers.
ExecStartPost=/usr/sbin/iptables -I INPUT 1 -p tcp --dport 443 -j REJECT
"""


def fingerprint(server):
    """What a rolling update changes on a server: its packages and its daemons' start times."""
    with server.sudo():
        return server.check_output(
            "{ dpkg-query -W -f '${Package} ${Version}\\n'; for u in nginx mariadb haproxy; do "
            "systemctl show -p ExecMainStartTimestampMonotonic --value $u; done; } | sha256sum")


@pytest.mark.drill
def test_a_server_failing_its_health_check_stops_the_run_and_the_rest_serve(client):
    plan = re.search(r"Patching, in this order: (.*)'", playbook("--check", path="playbooks/rolling-update.yml").stdout)
    order = plan.group(1).split(", ")
    first = get(order[0])
    assert order[0] in names_of("webservers"), f"the first server patched, {order[0]}, is not a web server"
    before = {name: fingerprint(get(name)) for name in order[1:]}
    with first.sudo():
        first.run_test("mkdir -p /etc/systemd/system/nginx.service.d && cat > "
                       "/etc/systemd/system/nginx.service.d/zz-drill.conf <<'EOF'\n%s\nEOF\nsystemctl daemon-reload"
                       % SABOTAGE)
    load = Load(client, 600)
    try:
        run = playbook("-e", "rolling_update_force_restart=true", "-e", "rolling_update_health_timeout=20",
                       path="playbooks/rolling-update.yml")
        requests = load.finish(stop=True)
        after = {name: fingerprint(get(name)) for name in order[1:]}
        state = admin(get(names_of("loadbalancers")[0]), "show servers state web")
    finally:
        with first.sudo():
            first.run_test("rm -f /etc/systemd/system/nginx.service.d/zz-drill.conf; systemctl daemon-reload; "
                           "while iptables -D INPUT -p tcp --dport 443 -j REJECT 2>/dev/null; do :; done")
    assert run.returncode != 0, "the run went on past a server that failed its health check"
    # The run ends right after the task that failed: the last task it started is the health check.
    last_task = run.stdout.split("PLAY RECAP")[0].rpartition("TASK [")[2].partition("]")[0]
    assert "reaches /healthz" in last_task, f"stopped by '{last_task}', not the health check:\n" + \
        (run.stdout + run.stderr)[-3000:]
    assert after == before, "a server after the failed one was changed"
    failed = [r for r in requests if r[1] != "200"]
    assert not failed, f"{len(failed)} requests failed while {order[0]} was out of the pool: {failed[:5]}"
    out_of_pool = [line for line in state.splitlines() if f" {order[0]} " in line]
    assert out_of_pool and out_of_pool[0].split()[6] != "0", f"{order[0]} is back in the pool: {out_of_pool}"
    # Repaired, a run limited to it puts it back in the pool.
    again = playbook("--limit", order[0], path="playbooks/rolling-update.yml")
    assert again.returncode == 0, again.stdout[-3000:]
    served = {r[2] for r in Load(client, 8).finish()}
    assert order[0] in served, again.stdout[-4000:]
    record_drill("rolling update stopped by a failed health check",
                 {"stopped_at": order[0], "requests": len(requests), "failed": len(failed),
                  "untouched": len(before), "back_in_pool_after_repair": True})
