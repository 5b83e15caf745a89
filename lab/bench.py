#!/usr/bin/env python3
"""`make bench`: figures a reviewer can rerun. Prints a table, writes the figures as JSON.

Never a pass/fail test: it measures, on this machine, in a lab of its own (containers
`bench-*`, network 172.30.30.0/24, the lab inventory's hosts):

1. Playbook cost: a full site.yml converge on fresh containers, a second (no-change) run and a
   `--tags certs` run; beside them the floor, the same packages installed with plain apt-get
   into fresh containers of the same images; the floor as converged (the same install from
   the converge's own sources, the security suite's, then the security updates the converge
   applies, unattended-upgrade with the converge's selection); the lower bound of a full
   converge (that apt work, plus one module call on one server for each task that changed the
   busiest host); and the ratios.
2. Serving: HTTPS requests per second and p50/p99 latency with wrk from `client` through the
   load balancer, against direct HTTPS from the first load balancer to the first web server
   (the reference), with
   keep-alive and with a new TLS handshake per request; then each tuning of TUNINGS before
   and after, in the same run; then the connection curve (CURVE_CONNECTIONS) through the load
   balancer with the settings from before the overload work (OVERLOAD_BEFORE) and after, and
   the knee of each curve.
3. Database backups (lab/bench_backup.py, --backup-mb): a full physical backup and a restore
   of at least 1 GB of generated rows against mariadb-dump and a reload of the same data, the
   backup's size, and the binary log archive's lag under the write load.

The bench's client stands in for many visitors: it is on the rate limit's allow-list.

The hosts are the lab inventory's: the servers are the hosts of the site's required groups
(infra_required_groups, checked by the filter infra_check_inventory), each moved from the lab's
subnet to the bench's at the same offset, so a bigger lab needs no edit here. The parsers and
the report are in lab/bench_report.py.

Each playbook's output (with ansible.posix.profile_tasks and profile_roles) is kept in
.cache/bench/<run>.log.

    python3 lab/bench.py [--json .cache/bench.json] [--duration 10] [--keep]
"""

import argparse
import base64
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

import bench_backup
from ansible.errors import AnsibleFilterError
from bench_report import (CURVE_CONNECTIONS, MODES, BenchError, knee, parse_s_time, parse_wrk,
                          report, role_times, tasks_run)
from labctl import container_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "filter_plugins"))
from inventory_checks import infra_check_inventory  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = "bench"
STATE = ROOT / ".cache" / "bench"
SUBNET = "172.30.30.0/24"  # the bench's own network; the lab's hosts keep their offsets in it
LAB_INVENTORY = ROOT / "inventory" / "lab"
# The SSH settings labctl writes into an inventory (`up --connection-vars`): the bench's own, not the lab's.
CONNECTION_VARS = "lab_connection.yml"
CLIENT_HOST = "client"  # wrk's host: the lab's outsider (lab/support.yml gives it its tools)


def tool(name):
    """A tool of the virtualenv: on PATH, else beside this Python."""
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


def read_inventory(inventory=LAB_INVENTORY):
    """`ansible-inventory --list` of an inventory, with the site's own group_vars (--playbook-dir)."""
    _, out = sh([tool("ansible-inventory"), "-i", str(inventory), "--playbook-dir", str(ROOT), "--list"], env=env())
    return json.loads(out)


def inventory_groups(data):
    """{group: [hosts]} of `ansible-inventory --list` output, child groups' hosts included, in order."""
    def members(group, seen=()):
        """The hosts of a group and of its children, each once."""
        entry = data.get(group, {})
        hosts = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            if child not in seen:
                hosts += [h for h in members(child, (*seen, group)) if h not in hosts]
        return hosts
    return {group: members(group) for group in data if group != "_meta"}


def move_address(address, lab_subnet, subnet=SUBNET):
    """An address of the lab's subnet at the same offset in the bench's; other addresses unchanged."""
    lab_net, bench_net = ipaddress.ip_network(lab_subnet), ipaddress.ip_network(subnet)
    addr = ipaddress.ip_address(address)
    if addr.version != lab_net.version or addr not in lab_net:
        return str(addr)
    return str(bench_net.network_address + (int(addr) - int(lab_net.network_address)))


def topology(data, subnet=SUBNET):
    """What the bench needs from the lab inventory (`ansible-inventory --list`), its addresses
    moved to the bench's subnet: the servers (infra_check_inventory over infra_required_groups),
    the load balancer and the web server of the direct path (the first of each group), wrk's
    client, the site's name and the lab's subnet."""
    hostvars = data.get("_meta", {}).get("hostvars", {})
    groups = inventory_groups(data)
    site = next(iter(hostvars.values()), {})
    subnets = {hv["lab_subnet"] for hv in hostvars.values() if "lab_subnet" in hv}
    if len(subnets) != 1 or "infra_required_groups" not in site or "infra_site_name" not in site:
        raise BenchError("the lab inventory must give one lab_subnet, and the site's group_vars "
                         "infra_required_groups and infra_site_name (read with --playbook-dir)")
    lab_subnet = subnets.pop()
    if ipaddress.ip_network(lab_subnet).num_addresses > ipaddress.ip_network(subnet).num_addresses:
        raise BenchError(f"the lab's subnet {lab_subnet} does not fit in the bench's {subnet}")
    try:
        servers = infra_check_inventory(groups, site["infra_required_groups"])
    except AnsibleFilterError as exc:  # an inventory site.yml would refuse too
        raise BenchError(f"lab inventory: {exc}") from exc
    if CLIENT_HOST not in hostvars:
        raise BenchError(f"the lab inventory has no host '{CLIENT_HOST}' (wrk's host)")

    def address(host):
        """A host's address in the bench."""
        return move_address(hostvars[host].get("ansible_host", host), lab_subnet, subnet)
    lb, web = groups["loadbalancers"][0], groups["webservers"][0]
    backup_host = (groups.get("backups") or [None])[0]
    floating = (site.get("lab_site") or {}).get("address")
    return {"servers": servers, "lab_subnet": lab_subnet, "site": site["infra_site_name"],
            "site_address": move_address(floating, lab_subnet, subnet) if floating else None,
            "lbs": groups["loadbalancers"],
            "lb": lb, "web": web, "web_address": address(web),
            "client": CLIENT_HOST, "client_address": address(CLIENT_HOST),
            "db_primary": groups["db_primary"][0],
            "db_hosts": list(dict.fromkeys(groups["db_primary"] + groups.get("db_replica", []))),
            "backup_host": backup_host, "backup_vars": hostvars.get(backup_host, {})}


def move_addresses(text, lab_subnet, subnet=SUBNET):
    """Every IPv4 address of the lab's subnet in a text, moved to the bench's subnet."""
    return re.sub(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])",
                  lambda m: move_address(m.group(0), lab_subnet, subnet), text)


def write_inventory(topo):
    """The lab inventory, moved to the bench's own subnet, SSH key and fact cache; its client on
    the rate limit's allow-list. ``topo``: topology() of the lab inventory."""
    inv = STATE / "inventory"
    if inv.exists():
        shutil.rmtree(inv)
    shutil.copytree(LAB_INVENTORY, inv, ignore=shutil.ignore_patterns("pki", CONNECTION_VARS))
    hosts = move_addresses((inv / "hosts.yml").read_text(), topo["lab_subnet"])
    hosts = re.sub(r"\n\s+lab_publish: \[[^\]]*\]", "", hosts)
    (inv / "hosts.yml").write_text(hosts)
    allvars = inv / "group_vars" / "all.yml"
    text = move_addresses(allvars.read_text(), topo["lab_subnet"])
    text = re.sub(r"(?m)^lab_ssh_dir: .*$", f"lab_ssh_dir: {ROOT / '.lab' / PREFIX / 'ssh'}", text)
    text += ("\n# The bench's client stands in for many visitors at full speed: never rate limited.\n"
             f"haproxy_rate_limit_allow: [{topo['client_address']}]\n")
    allvars.write_text(text)
    return inv


def _groups(node, found=None):
    """{group: its node} of a parsed YAML inventory, at any depth."""
    found = {} if found is None else found
    for name, child in ((node or {}).get("children") or {}).items():
        found[name] = child or {}
        _groups(child, found)
    return found


def seed_site(hosts):
    """The parsed hosts.yml of the lab cut to the seed design's site, to compare converge times:
    the first load balancer and the web servers of the primary and of the first replica; every
    other server out of every group, and the site's names as that load balancer's network aliases (no floating
    address: write_small_inventory sets keepalived_vip empty). Returns (the cut inventory, the servers
    removed)."""
    groups = _groups(hosts.get("all", {}))
    members = {name: list((node.get("hosts") or {})) for name, node in groups.items()}
    if not members.get("loadbalancers") or not members.get("webservers"):
        raise BenchError("the lab inventory has no loadbalancers or webservers group to cut")
    databases = set(members.get("db_primary", []) + members.get("db_replica", [])[:1])
    keep_lb = members["loadbalancers"][0]
    dropped = members["loadbalancers"][1:] + [w for w in members["webservers"] if w not in databases]
    if not dropped:
        raise BenchError("the lab inventory is the seed's site already: nothing to compare")
    cut = json.loads(json.dumps(hosts))
    for name, node in _groups(cut.get("all", {})).items():
        for host in dropped:
            (node.get("hosts") or {}).pop(host, None)
    # The site's names become the load balancer's own (a network alias, as before the floating
    # address): labctl refuses a floating address that is a host's.
    names = (cut["all"].get("vars") or {}).pop("lab_site", {}).get("names", [])
    node = next(node["hosts"][keep_lb] for node in _groups(cut["all"]).values()
                if keep_lb in (node.get("hosts") or {}) and (node["hosts"][keep_lb] or {}).get("ansible_host"))
    node["lab_aliases"] = list(names)
    return cut, dropped


def write_small_inventory(inv):
    """The bench inventory (write_inventory) cut to the seed's site, beside it; its path and the
    servers removed."""
    small = STATE / "inventory-seed"
    if small.exists():
        shutil.rmtree(small)
    shutil.copytree(inv, small)
    cut, dropped = seed_site(yaml.safe_load((small / "hosts.yml").read_text()))
    (small / "hosts.yml").write_text(yaml.safe_dump(cut, sort_keys=False))
    with (small / "group_vars" / "all.yml").open("a") as handle:
        handle.write("\n# The seed's site: one load balancer, no floating address.\nkeepalived_vip: \"\"\n")
    return small, dropped


def env():
    """The environment of every ansible command: the project's config, no colour, profile
    callbacks, the bench's own fact cache, the virtualenv first on PATH."""
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks,ansible.posix.profile_roles",
                PROFILE_TASKS_TASK_OUTPUT_LIMIT="40",
                ANSIBLE_CACHE_PLUGIN_CONNECTION=str(STATE / "facts"),
                PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def fresh_lab(inv):
    """Remove the bench's containers and fact cache, start fresh ones."""
    sh([sys.executable, "lab/labctl.py", "down", "--prefix", PREFIX])
    shutil.rmtree(STATE / "facts", ignore_errors=True)
    sh([sys.executable, "lab/labctl.py", "up", "--prefix", PREFIX, "--inventory", str(inv), "--no-publish",
        "--connection-vars", str(inv / CONNECTION_VARS)])


# The controller's peak resident memory of each logged playbook run, MiB (its largest process).
PEAK_MB = {}


def playbook(inv, *args, log=None):
    """Run a playbook; (seconds, changed per host, its output). ``log``: keep its output in
    .cache/bench/ and its peak memory in PEAK_MB."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [tool("ansible-playbook"), "-i", str(inv), *args], stdout=out_file, stderr=err_file, text=True,
            cwd=ROOT, env=env())
        # wait4: the run's own resource usage, its peak memory among them (Linux: the largest of
        # ansible-playbook and the workers it reaped).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    took = time.monotonic() - started
    if log:
        (STATE / f"{log}.log").write_text(out + err)
        PEAK_MB[log] = round(usage.ru_maxrss / 1024)
    if proc.returncode != 0:
        failures = [line for line in out.splitlines() if line.startswith(("fatal:", "failed:"))]
        raise BenchError(f"ansible-playbook {' '.join(map(str, args))} failed (rc {proc.returncode})"
                         + (f", its log: {STATE / (log + '.log')}" if log else "") + ":\n"
                         + "\n".join(failures[:5] or out.splitlines()[-25:]))
    changed = {h: int(c) for h, c in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", out, re.M)}
    return round(took, 1), changed, out


CALLS = 40


def module_call_cost(inv, servers, calls=CALLS):
    """Seconds per module call on the servers at once: the smallest task there is
    (ansible.builtin.ping, `calls` times on every server), so a run of N tasks per host cannot
    take less than about N times this."""
    book = STATE / "module-calls.yml"
    book.write_text(f"""---
- name: Bench | the cost of one module call on every server
  hosts: {":".join(servers)}
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


def docker_exec(host, command, timeout=1800):
    """Run a bash command in a bench host's container; (seconds, output)."""
    return sh(["docker", "exec", container_name(PREFIX, host), "bash", "-c", command], timeout=timeout)


def manual_packages(host):
    """The packages apt marks as manually installed on a bench host."""
    return set(docker_exec(host, "apt-mark showmanual")[1].split())


def on_fresh_servers(inv, servers, each):
    """Fresh containers; ``each(host, base)`` on every server at once, ``base`` being the
    packages its fresh image has installed by hand (apt-mark); (seconds, {host: its result})."""
    fresh_lab(inv)
    base = {host: manual_packages(host) for host in servers}
    started = time.monotonic()
    with ThreadPoolExecutor(len(servers)) as pool:
        results = dict(zip(servers, pool.map(lambda host: each(host, base[host]), servers)))
    return round(time.monotonic() - started, 1), results


# The floors' commands run without debconf's questions.
NONINTERACTIVE = "export DEBIAN_FRONTEND=noninteractive; "


def apt_install(wanted):
    """The floors' install of ``wanted``: plain apt-get, without recommends, as the roles install."""
    return f"apt-get install -y -q --no-install-recommends {' '.join(sorted(wanted))} >/dev/null"


def floor(inv, servers, packages):
    """Fresh containers; the same packages with plain apt-get on every server at once (without
    recommends, as the roles install them)."""

    def install(host, base):
        """Install one server's packages; its seconds and how many."""
        wanted = packages[host] - base
        took, _ = docker_exec(host, f"{NONINTERACTIVE}apt-get update -q >/dev/null && {apt_install(wanted)}")
        return {"seconds": round(took, 1), "packages": len(wanted)}

    return on_fresh_servers(inv, servers, install)


# The files by which a converged server's apt differs from a fresh one's: Debian's sources with
# the security suite (the common role's) and the daily run's selection of security updates.
APT_FILES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/debian.sources",
             "/etc/apt/apt.conf.d/50unattended-upgrades")


def apt_files(host):
    """A bench host's APT_FILES, {path: text}."""
    return {path: docker_exec(host, f"cat {path}")[1] for path in APT_FILES}


def floor_as_converged(inv, servers, packages, files):
    """Fresh containers given the converged servers' apt files (``files``: {host: apt_files()}):
    the same packages with plain apt-get from the converge's sources, then the security updates
    of the converge's own selection (unattended-upgrade, as the common role runs it on a first
    converge). What a converge cannot do with less apt work; its steps' seconds per host, and
    how many packages the updates took."""

    def put(host, names):
        """Write the converged host's files of ``names`` into the fresh container."""
        for path in names:
            encoded = base64.b64encode(files[host][path].encode()).decode()
            docker_exec(host, f"echo {encoded} | base64 -d > {shlex.quote(path)}")

    def install(host, base):
        """One server: sources, lists, install, security updates."""
        put(host, APT_FILES[:2])
        steps = {"lists": docker_exec(host, "apt-get update -q >/dev/null")[0],
                 "install": docker_exec(host, NONINTERACTIVE + apt_install(packages[host] - base))[0]}
        put(host, APT_FILES[2:])  # after the install: the package would find its own file there
        steps["security updates"], out = docker_exec(host, "unattended-upgrade -v --no-minimal-upgrade-steps 2>&1")
        upgraded = re.search(r"Packages that will be upgraded: (.*)", out)
        return {"seconds": {step: round(took, 1) for step, took in steps.items()},
                "upgraded": len(upgraded.group(1).split()) if upgraded else 0}

    return on_fresh_servers(inv, servers, install)


def wrk(host, url, duration, connections, close, host_header=None, timeout=None):
    """One wrk run from a host (``timeout``: seconds before wrk counts a request as timed out)."""
    headers = (f"-H 'Host: {host_header}' " if host_header else "") + ("-H 'Connection: close' " if close else "")
    limit = f"--timeout {timeout}s " if timeout else ""
    _, out = docker_exec(host, f"wrk -t2 -c{connections} -d{duration}s {limit}--latency {headers}{url}",
                         timeout=duration + 60 + (timeout or 0))
    return parse_wrk(out)



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


def s_time(host, target, duration, reuse):
    """One `openssl s_time` run from a host: full handshakes (-new) or resumed ones (-reuse)."""
    mode = "-reuse" if reuse else "-new"
    _, out = docker_exec(host, f"openssl s_time -connect {target} -www / "
                               f"-time {duration} {mode} 2>&1", timeout=duration + 60)
    return parse_s_time(out)


def direct_label(topo):
    """The name of the reference path in the report: the web server, reached directly."""
    return f"direct to {topo['web']} (reference)"


def handshakes(topo, duration):
    """TLS session resumption, as a client that resumes sees it: one connection at a time,
    a full handshake each (-new) against a resumed session each (-reuse)."""
    targets = {"through the load balancer": (topo["client"], f"{topo['site']}:443"),
               direct_label(topo): (topo["lb"], f"{topo['web_address']}:443")}
    results = {}
    for label, (host, target) in targets.items():
        for reuse in (False, True):
            name = f"{label}, {'resumed' if reuse else 'full'} handshake"
            try:
                results[name] = s_time(host, target, duration, reuse)
            except (BenchError, subprocess.TimeoutExpired) as exc:  # a figure missing, not the whole bench
                results[name] = {"error": str(exc)[:500]}
    return results


def lb_url(topo):
    """The site's address, through the load balancer."""
    return f"https://{topo['site']}:443/"


def serving_paths(topo, duration, connections):
    """The two paths, each mode: (path, mode) -> wrk's figures."""
    return {
        "lb": lambda close: wrk(topo["client"], lb_url(topo), duration, connections, close),
        "direct": lambda close: wrk(topo["lb"], f"https://{topo['web_address']}:443/", duration, connections, close,
                                    host_header=topo["site"]),
    }


def serving(inv, topo, duration, connections):
    """Both paths in both modes, then each tuning before and after, side by side."""
    # wrk is on the client (lab/support.yml); the reference runs from the load balancer, which
    # alone may reach a web server's 443, so it gets wrk too (a bench container: nothing to keep clean).
    docker_exec(topo["lb"], "command -v wrk >/dev/null || (apt-get update -q >/dev/null && "
                         "DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null)")
    paths = serving_paths(topo, duration, connections)
    holder = address_holder(topo)
    runs = {f"{label}, {mode}": paths[path](close)
            for path, label in (("lb", "through the load balancer"), ("direct", direct_label(topo)))
            for mode, close in MODES.items()}
    tunings = []
    for tuning in TUNINGS:
        result = {"name": tuning["name"], "path": tuning["path"]}
        for side in ("before", "after"):
            extra = tuning[side]
            playbook(inv, "site.yml", "--tags", tuning["tags"], *extra_vars(extra))
            result[side] = {"vars": extra, **{mode: paths[tuning["path"]](close) for mode, close in MODES.items()}}
        tunings.append(result)
    curve = connection_curve(inv, topo, duration)
    playbook(inv, "site.yml", "--tags", "lb,web")
    return {"runs": runs, "tunings": tunings, "curve": curve, "handshakes": handshakes(topo, duration),
            "site_address": topo["site_address"], "site_address_holder": holder}


def address_holder(topo):
    """The load balancer holding the site's floating address (keepalived), whose HAProxy the
    requests through the load balancer reach; None without a floating address."""
    if not topo.get("site_address"):
        return None
    held = [lb for lb in topo["lbs"]
            if docker_exec(lb, f"ip -o -4 addr show | grep -c ' {topo['site_address']}/' || true", timeout=30)[1].strip()
            not in ("", "0")]
    if len(held) != 1:
        raise BenchError(f"the site's floating address {topo['site_address']} is held by {held or 'no load balancer'}")
    return held[0]


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


def connection_curve(inv, topo, duration):
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
                    points[connections] = wrk(topo["client"], lb_url(topo), duration, connections, close,
                                              timeout=CURVE_TIMEOUT_S)
                except (BenchError, subprocess.TimeoutExpired) as exc:  # a point missing, not the whole bench
                    points[connections] = {"error": str(exc)[:500]}
            curve[side][mode] = {"points": points, "knee": knee(points)}
    return curve


def by_size(inv, topo, full, again):
    """Full and no-change converge of the seed's site (seed_site: fresh containers), beside the
    lab's: what each added server costs."""
    small, dropped = write_small_inventory(inv)
    fresh_lab(small)
    playbook(small, "lab/support.yml")
    small_full, _, _ = playbook(small, "site.yml", log="full-seed")
    small_again, _, _ = playbook(small, "site.yml", log="no-change-seed")
    servers = len(topo["servers"])
    return {"seed": {"servers": servers - len(dropped), "full_converge_s": small_full, "no_change_run_s": small_again,
                     "peak_mb": max(PEAK_MB["full-seed"], PEAK_MB["no-change-seed"])},
            "lab": {"servers": servers, "full_converge_s": full, "no_change_run_s": again,
                    "peak_mb": max(PEAK_MB["full"], PEAK_MB["no-change"])},
            "added": dropped,
            "per_added_server_s": {"full": round((full - small_full) / len(dropped), 1),
                                   "no_change": round((again - small_again) / len(dropped), 1)}}


def extra_vars(values):
    """`-e` arguments for a dict of variables (JSON keeps their types)."""
    return ["-e", json.dumps(values)] if values else []


def main(argv=None):
    """`make bench`: run every measure in a fresh bench lab, print the report, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / ".cache" / "bench.json"))
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    parser.add_argument("--no-compare-seed", dest="compare_seed", action="store_false",
                        help="skip the converge of the seed's smaller site (one load balancer, two web servers)")
    parser.add_argument("--backup-mb", type=int, default=1024,
                        help="MiB of rows generated for the database backup figures (0: none)")
    args = parser.parse_args(argv)
    STATE.mkdir(parents=True, exist_ok=True)
    figures = {"machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}}
    try:
        topo = topology(read_inventory())
        inv = write_inventory(topo)
        fresh_lab(inv)
        playbook(inv, "lab/support.yml")
        call_s = module_call_cost(inv, topo["servers"])
        full, changed_full, _ = playbook(inv, "site.yml", log="full")
        again, changed_again, again_out = playbook(inv, "site.yml", log="no-change")
        again_roles = role_times(again_out)
        certs, changed_certs, _ = playbook(inv, "site.yml", "--tags", "certs", log="certs")
        packages = {host: manual_packages(host) for host in topo["servers"]}
        converged_apt = {host: apt_files(host) for host in topo["servers"]}
        call_one_s = module_call_cost(inv, topo["servers"][:1])
        figures["serving"] = serving(inv, topo, args.duration, args.connections)
        if args.backup_mb:
            figures["backup"] = bench_backup.measure(
                topo, topo["backup_vars"], docker_exec, lambda *a, log=None: playbook(inv, *a, log=log),
                args.backup_mb * 1024 * 1024)
        floor_total, floor_hosts = floor(inv, topo["servers"], packages)
        converged_total, converged_hosts = floor_as_converged(inv, topo["servers"], packages, converged_apt)
        # No converge can take less: the apt work of floor_as_converged, and one module call on one
        # server for each task that changed something on the host that changed most.
        changed_most = max(changed_full[host] for host in topo["servers"])
        lower_bound = round(converged_total + changed_most * call_one_s, 1)
        figures["playbook"] = {
            "full_converge_s": full, "no_change_run_s": again, "certs_run_s": certs, "apt_floor_s": floor_total,
            "peak_mb": dict(PEAK_MB),
            "apt_floor_as_converged_s": converged_total, "apt_floor_as_converged_per_host": converged_hosts,
            "module_call_one_server_s": call_one_s, "full_changed_most": changed_most,
            "full_lower_bound_s": lower_bound,
            "apt_floor_per_host": floor_hosts, "no_change_roles": again_roles,
            "module_call_s": call_s, "no_change_tasks": tasks_run(again_out), "changed": {"full": changed_full, "no_change": changed_again,
                                                           "certs": changed_certs},
            "ratios": {"full / floor": round(full / floor_total, 2),
                       "lower bound / floor": round(lower_bound / floor_total, 2),
                       "full / floor as converged": round(full / converged_total, 2),
                       "no-change / full": round(again / full, 2),
                       "certs / no-change": round(certs / again, 2)}}
        if args.compare_seed:
            figures["playbook"]["by_size"] = by_size(inv, topo, full, again)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        # What was measured before the failure is kept (the report needs every part).
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"bench: the figures measured so far: {args.json}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            sh([sys.executable, "lab/labctl.py", "down", "--prefix", PREFIX], check=False)
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))
    print(f"\nfigures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
