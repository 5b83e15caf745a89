"""The firewall, proven by real traffic: every server's ports, probed from every host.

Listeners are made sure of first (a temporary one where no service listens yet), so a port
cannot look closed by accident. Then `client` (an outsider), each load balancer, each web server, the
monitoring host and the controller connect to every server's probed ports: what the policy allows connects, the rest
times out (dropped). The policy has no SSH flow at all: SSH works from the controller only
because the firewall role always allows it.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import SERVER_GROUPS, get, hosts_of, names_of, playbook, recap, site_setting

# The ports as the inventory and the roles set them: SSH, the site (80 and 443 on the load
# balancers), the web servers' HTTPS, the database, and the node, nginx, mysqld and HAProxy
# exporters (the monitoring host only); 9999, which nothing opens, must stay closed.
SSH, WEB_HTTPS, MYSQL = (site_setting(n) for n in ("common_ssh_port", "nginx_https_port", "mysql_port"))
NODE, NGINX_EXPORTER, MYSQLD_EXPORTER, HAPROXY_EXPORTER = (site_setting(n) for n in (
    "exporters_node_port", "exporters_nginx_port", "exporters_mysqld_port", "haproxy_metrics_port"))
PORTS = tuple(sorted({SSH, 80, 443, WEB_HTTPS, MYSQL, NODE, NGINX_EXPORTER, MYSQLD_EXPORTER, HAPROXY_EXPORTER, 9999}))


def expected_matrix(names):
    """The expected matrix, written from the policy's meaning (the roles' firewall_flows.yml) by
    group and expanded over the inventory: (target, port) -> sources allowed. `names(*groups)`
    gives the hosts of groups. Everything not listed must be dropped."""
    lbs, webs, monitors = names("loadbalancers"), names("webservers"), names("monitoring")
    dbs, backups = names("db_primary", "db_replica"), names("backups")
    servers = names(*SERVER_GROUPS)
    sources = list(dict.fromkeys(["client", *servers, *monitors, *backups, "controller"]))
    allowed = {}

    def allow(targets, ports, froms):
        for target in targets:
            for port in ports:
                allowed.setdefault((target, port), set()).update(set(froms) - {target})
    allow(lbs, (80, 443), sources)                   # anyone reaches the site
    allow(webs, (WEB_HTTPS,), lbs + monitors)        # the load balancers reach the web servers, the monitoring probes them
    allow(dbs, (MYSQL,), dbs + webs)                 # replication, and the application
    allow(dbs, (MYSQL,), backups)                    # the backup hosts' binary log archive
    allow(servers, (NODE,), monitors)                # node exporter
    allow(webs, (NGINX_EXPORTER,), monitors)         # nginx exporter
    allow(dbs, (MYSQLD_EXPORTER,), monitors)         # mysqld exporter
    allow(lbs, (HAPROXY_EXPORTER,), monitors)        # HAProxy's exporter
    allow(servers, (SSH,), ["controller"])           # SSH from the controller only (the role's guarantee)
    return tuple(sources), tuple(servers), allowed


SOURCES, TARGETS, ALLOWED = expected_matrix(names_of)
MONITORS = tuple(names_of("monitoring"))

LISTENER = r"""
import socket, sys, threading, time
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
time.sleep(600)
"""

PROBE = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    addr, port = target
    try:
        socket.create_connection((addr, port), timeout=3).close(); return "open"
    except ConnectionRefusedError: return "refused"
    except OSError: return "timeout"
targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(list(pool.map(probe, [tuple(t) for t in targets]))))
"""

testinfra_hosts = hosts_of(*SERVER_GROUPS)[:1]  # the matrix is one fixture; run it once
# What the firewall backend changes: the drills scenario (iptables) runs these too.
pytestmark = pytest.mark.firewall


def listening(host, port):
    """Whether something listens on the port on a non-loopback address."""
    lines = host.run(f"ss -Hltn 'sport = :{port}'").stdout.splitlines()
    return any(not (line.split()[3].startswith("127.") or line.split()[3].startswith("[::1]")) for line in lines)


@pytest.fixture(scope="module")
def matrix():
    hosts = {name: get(name) for name in TARGETS + ("client",) + MONITORS}
    addresses = {name: h.ansible.get_variables()["ansible_host"] for name, h in hosts.items()}
    started = []
    try:
        for name in TARGETS:
            host = hosts[name]
            missing = [p for p in PORTS if not listening(host, p)]
            if missing:
                with host.sudo():
                    host.run_test("systemd-run --unit=fw-probe-listener --collect -p RuntimeMaxSec=300 "
                                  "/usr/bin/python3 -c %s" + " %s" * len(missing), LISTENER, *map(str, missing))
                started.append(host)
        for name in TARGETS:
            for port in PORTS:
                for _ in range(20):
                    if listening(hosts[name], port):
                        break
                    subprocess.run(["sleep", "0.25"], check=True)
                assert listening(hosts[name], port), f"nothing listens on {name}:{port}: the probe would prove nothing"
        cells = {}
        for source in SOURCES:
            targets = [(t, p) for t in TARGETS for p in PORTS if t != source]
            wire = json.dumps([[addresses[t], p] for t, p in targets])
            if source == "controller":
                out = subprocess.run([sys.executable, "-c", PROBE, wire], capture_output=True, text=True,
                                     check=True, timeout=60).stdout
            else:
                out = hosts[source].check_output("python3 -c %s %s", PROBE, wire)
            cells.update({(source, t, p): state for (t, p), state in zip(targets, json.loads(out))})
        yield cells
    finally:
        for host in started:
            with host.sudo():
                host.run("systemctl stop fw-probe-listener")


CASES = [(s, t, p) for s in SOURCES for t in TARGETS for p in PORTS if s != t]


@pytest.mark.parametrize("source, target, port", CASES, ids=[f"{s}->{t}:{p}" for s, t, p in CASES])
def test_matrix_cell(matrix, source, target, port):
    allowed = source in ALLOWED.get((target, port), set())
    state = matrix[(source, target, port)]
    if allowed:
        assert state == "open", f"{source} should reach {target}:{port}, got {state}"
    else:
        assert state == "timeout", f"{source} must not reach {target}:{port} (dropped), got {state}"


def test_firewall_is_enabled_at_boot(host):
    for name in TARGETS:
        server = get(name)
        backend = server.ansible.get_variables().get("firewall_backend", "ufw")
        unit = "ufw" if backend == "ufw" else "netfilter-persistent"
        assert server.service(unit).is_enabled, f"{unit} is not enabled on {name}"


def test_policy_itself_never_mentions_ssh():
    """Keeps the matrix honest: SSH reaches the servers only through the role's own guarantee."""
    import glob  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel

    root = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    with open(os.path.join(root, "group_vars", "all", "firewall.yml"), encoding="utf-8") as handle:
        flows = list(yaml.safe_load(handle)["firewall_site_flows"])
    for path in glob.glob(os.path.join(root, "roles", "*", "firewall_flows.yml")):
        with open(path, encoding="utf-8") as handle:
            flows += yaml.safe_load(handle)["firewall_flows"]
    assert len(flows) >= 4, "the policy lost its flows"
    assert all(str(port) != "22" for flow in flows for port in flow["ports"])


MARKER = "-p tcp --dport 9 -m comment --comment reload-marker -j DROP"


def test_ufw_converges_without_reloading_and_removes_rules_added_by_hand():
    """A run with nothing to change must not reload ufw (every reload flushes and rebuilds its
    chains); a rule added by hand with `ufw allow` is drift, and the next run removes it."""
    name = names_of("webservers")[-1]
    server = get(name)
    if server.ansible.get_variables().get("firewall_backend", "ufw") != "ufw":
        pytest.skip("the iptables backend loads whole files")
    client = get("client").ansible.get_variables()["ansible_host"]
    with server.sudo():
        # A rule put straight into ufw's chain survives exactly as long as ufw does not reload.
        server.run_test(f"iptables -A ufw-user-input {MARKER}")
        try:
            run = playbook("--tags", "firewall", "--limit", name)
            assert run.returncode == 0, run.stdout[-3000:]
            assert recap(run)[name] == 0, run.stdout[-3000:]
            assert server.run(f"iptables -C ufw-user-input {MARKER}").rc == 0, "a no-change run reloaded ufw"

            server.run_test(f"ufw allow proto tcp from {client} to any port 9999")
            assert "9999" in server.check_output("ufw show added")
            run = playbook("--tags", "firewall", "--limit", name)
            assert run.returncode == 0, run.stdout[-3000:]
            assert recap(run)[name] >= 1
            assert "9999" not in server.check_output("ufw show added"), "the rule added by hand is still there"
            assert f"{client}" not in server.check_output("iptables -S ufw-user-input")
            assert server.run(f"iptables -C ufw-user-input {MARKER}").rc != 0, "the removal did not reload ufw"
        finally:
            server.run(f"iptables -D ufw-user-input {MARKER}")
            server.run(f"ufw delete allow proto tcp from {client} to any port 9999")
