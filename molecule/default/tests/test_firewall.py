"""The firewall, proven by real traffic: every server's ports, probed from every host.

Listeners are made sure of first (a temporary one where no service listens yet), so a port
cannot look closed by accident. Then `client` (an outsider), each load balancer, each web server, the
monitoring host and the controller connect to every server's probed ports: what the policy allows connects, the rest
times out (dropped). The policy has no SSH flow at all: SSH works from the controller only
because the firewall role always allows it.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

from conftest import (CONNECT, SERVER_GROUPS, certbot_issuer, container, docker, get, hosts_of, names_of, playbook,
                      reachable, recap, site_setting, wait_for)

# The ports as the inventory and the roles set them: SSH, the site (80 and 443 on the load
# balancers), the web servers' HTTPS, the database, certbot's challenge listener, and the node, nginx, mysqld and HAProxy
# exporters (the monitoring host only); 9999, which nothing opens, must stay closed.
SSH, WEB_HTTPS, MYSQL, ACME = (site_setting(n) for n in ("common_ssh_port", "nginx_https_port", "mysql_port",
                                                         "certbot_http01_port"))
NODE, NGINX_EXPORTER, MYSQLD_EXPORTER, HAPROXY_EXPORTER = (site_setting(n) for n in (
    "exporters_node_port", "exporters_nginx_port", "exporters_mysqld_port", "haproxy_metrics_port"))
PORTS = tuple(sorted({SSH, 80, 443, WEB_HTTPS, MYSQL, ACME, NODE, NGINX_EXPORTER, MYSQLD_EXPORTER, HAPROXY_EXPORTER,
                      9999}))


def expected_matrix(names, issuer):
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
    allow(servers, (SSH,), ["controller"])           # SSH from the controller (the role's guarantee)
    allow(lbs, (ACME,), lbs)                         # each load balancer's HAProxy reaches every certbot listener
    allow(lbs, (SSH,), [issuer])                     # the certificate's issuer hands it on over SSH
    return tuple(sources), tuple(servers), allowed


SOURCES, TARGETS, ALLOWED = expected_matrix(names_of, certbot_issuer())
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
# What the firewall backend changes: the iptables scenario runs these too.
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


def test_policy_opens_ssh_only_for_the_certificate():
    """Keeps the matrix honest: SSH reaches the servers through the role's own guarantee, and
    through one flow alone (the certificate's issuer to the other load balancers)."""
    import glob  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel

    root = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    with open(os.path.join(root, "group_vars", "all", "firewall.yml"), encoding="utf-8") as handle:
        flows = list(yaml.safe_load(handle)["firewall_site_flows"])
    for path in glob.glob(os.path.join(root, "roles", "*", "firewall_flows.yml")):
        with open(path, encoding="utf-8") as handle:
            flows += yaml.safe_load(handle)["firewall_flows"]
    assert len(flows) >= 4, "the policy lost its flows"
    ssh = [flow["name"] for flow in flows for port in flow.get("ports", []) if str(port) == "22" or "ssh" in str(port)]
    assert ssh == ["certificate-sync"], ssh


MARKER = "-p tcp --dport 9 -m comment --comment reload-marker -j DROP"


PROOF = "firewall : Prove that Ansible still reaches the host"
PROVE = "firewall : Prove access through the changed rules"  # the include of the proof


def task_on(run, task, name):
    """How a task of the run ended on host ``name`` the last time it ran ('ok', 'skipping'...):
    the preflight runs some of the role's tasks too, before the role's own run."""
    section = run.stdout.rsplit(f"TASK [{task}]", 1)[1].split("\nTASK [", 1)[0].split("\nPLAY [", 1)[0]
    found = re.search(rf"^(\w+): \[{re.escape(name)}\]", section, re.M)
    assert found, section
    return found.group(1)


def proof_on(run, name):
    """How the run's fresh connection through the new rules ended on host ``name``: 'ok', 'skipping'..."""
    return task_on(run, PROOF, name)


ASK = "firewall : Find the address the controller connects from"


def test_with_no_admin_network_ssh_stays_open_to_the_controller_from_either_read():
    """With infra_admin_networks empty, SSH is allowed from the address the controller connects
    from alone, and the run must find it: in site.yml, from the common role's read (the
    firewall's own question skipped); with the firewall's tag alone, by asking. The lab's admin
    network is that very address, so the rules do not change; an address not found stops the
    run before any host changes, and a wrong one would change the rules."""
    run_tags = os.environ.get("ANSIBLE_RUN_TAGS", "")
    if run_tags and "common" not in run_tags.split(","):
        pytest.skip(f"this scenario converges only --tags {run_tags}: the common role's read is the default scenario's")
    name = names_of("webservers")[-1]
    server = get(name)
    controller = server.check_output("printenv SSH_CLIENT").split()[0]
    # The converged firewall allows SSH from that address (the lab's admin network is the
    # controller itself, the gateway of its subnet): with no admin network the rules stay.
    with server.sudo():
        assert f"{controller}/32" in server.check_output("iptables -S"), f"{name}'s firewall has no rule for {controller}"
    no_admins = ("-e", '{"infra_admin_networks": []}', "--limit", name)
    for tags, asked in (("common,firewall", "skipping"), ("firewall", "ok")):
        run = playbook("--tags", tags, *no_admins)
        assert run.returncode == 0, run.stdout[-3000:]
        assert recap(run)[name] == 0, run.stdout[-3000:]
        assert task_on(run, ASK, name) == asked, f"--tags {tags}: the firewall's own question {task_on(run, ASK, name)}"
    # Neither network nor controller: the lockout check refuses, before the rules are applied.
    run = playbook("--tags", "common,firewall", "-e", '{"firewall_allow_controller": false}', *no_admins)
    assert run.returncode != 0 and "No SSH source to allow on " + name in run.stdout + run.stderr, run.stderr[-3000:]
    assert recap(run)[name] == 0, run.stdout[-3000:]


def ssh_logins(name):
    """How many SSH logins the server's sshd has accepted (its journal, read from outside)."""
    out = docker("exec", container(name), "journalctl", "-u", "ssh", "--no-pager", "-o", "cat").stdout
    return out.count("Accepted publickey")


def test_a_no_change_run_keeps_its_connection():
    """The common role's and the firewall's fresh connections (meta: reset_connection, which
    Ansible runs whatever its condition says) are included only where the login or the rules
    changed: once a run has opened its connection, the next run with nothing to change logs in
    no more (the connection persists between runs, ssh's ControlPersist)."""
    run_tags = os.environ.get("ANSIBLE_RUN_TAGS", "")
    if run_tags and "common" not in run_tags.split(","):
        pytest.skip(f"this scenario converges only --tags {run_tags}")
    name = names_of("webservers")[-1]
    for _ in range(2):
        before = ssh_logins(name)
        run = playbook("--tags", "common,firewall", "--limit", name)
        assert run.returncode == 0 and recap(run)[name] == 0, run.stdout[-3000:]
    assert ssh_logins(name) == before, f"the second no-change run logged in to {name} again"


def test_ufw_converges_without_reloading_and_removes_rules_added_by_hand():
    """A run with nothing to change must not reload ufw (every reload flushes and rebuilds its
    chains), and keeps its connection (nothing to prove through unchanged rules); a rule added
    by hand with `ufw allow` is drift, and the next run removes it and proves, through a fresh
    connection, that Ansible still gets in."""
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
            # The proof's include skipped: its reset of the connection is not run (Ansible
            # runs meta: reset_connection whatever a condition says).
            assert task_on(run, PROVE, name) == "skipping", "a no-change run opened a new connection to prove nothing"
            assert f"TASK [{PROOF}]" not in run.stdout

            server.run_test(f"ufw allow proto tcp from {client} to any port 9999")
            assert "9999" in server.check_output("ufw show added")
            run = playbook("--tags", "firewall", "--limit", name)
            assert run.returncode == 0, run.stdout[-3000:]
            assert recap(run)[name] >= 1
            assert "9999" not in server.check_output("ufw show added"), "the rule added by hand is still there"
            assert f"{client}" not in server.check_output("iptables -S ufw-user-input")
            assert server.run(f"iptables -C ufw-user-input {MARKER}").rc != 0, "the removal did not reload ufw"
            assert proof_on(run, name) == "ok", "the changed rules were not proven by a fresh connection"
        finally:
            server.run(f"iptables -D ufw-user-input {MARKER}")
            server.run(f"ufw delete allow proto tcp from {client} to any port 9999")


STRAY_VRRP = "-A ufw-before-input -p 112 -s 10.9.9.9/32 -j ACCEPT"
OLD_RECORD = "/etc/ufw/infra-playbooks-rules.json"


def test_ufw_shortcuts_still_mend_the_vrrp_block_the_ipv6_switch_and_old_files():
    """The ufw tasks run only where the role's one read finds work (issue 19): a source added
    by hand to the vrrp block of before.rules, IPv6 switched off and an earlier version's rule
    record put back are all found by that read and mended, and the stray source is no longer
    accepted by the running firewall."""
    name = names_of("loadbalancers")[0]
    server = get(name)
    if server.ansible.get_variables().get("firewall_backend", "ufw") != "ufw":
        pytest.skip("the iptables backend loads whole files")
    with server.sudo():
        block = server.check_output("sed -n '/^# BEGIN infra-playbooks firewall/,/^# END infra-playbooks firewall/p' "
                                    "/etc/ufw/before.rules")
        assert "-p 112" in block, "the load balancer has no vrrp block to drift"
        server.run_test(f"sed -i '/^# END infra-playbooks firewall/i {STRAY_VRRP}' /etc/ufw/before.rules && ufw reload")
        server.run_test(f"sed -i 's/^IPV6=.*/IPV6=no/' /etc/default/ufw && echo '{{}}' > {OLD_RECORD}")
        assert "10.9.9.9" in server.check_output("iptables -S ufw-before-input")

        run = playbook("--tags", "firewall", "--limit", name)
        assert run.returncode == 0, run.stdout[-3000:]
        assert recap(run)[name] >= 3, run.stdout[-3000:]
        assert server.check_output("sed -n '/^# BEGIN infra-playbooks firewall/,/^# END infra-playbooks firewall/p' "
                                   "/etc/ufw/before.rules") == block, "the vrrp block keeps its hand edit"
        assert "10.9.9.9" not in server.check_output("iptables -S ufw-before-input"), "the stray source is still accepted"
        assert server.check_output("grep ^IPV6= /etc/default/ufw") == "IPV6=yes"
        assert not server.file(OLD_RECORD).exists, "the earlier version's rule record is back"


# VRRP (IP protocol 112, no ports): a raw socket on a load balancer sees the packets its
# firewall accepted; each source sends a few carrying a marker of its own.
RAW_LISTEN = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112); s.settimeout(0.5)
end, seen = time.time() + float(sys.argv[1]), set()
while time.time() < end:
    try:
        data, (source, _) = s.recvfrom(4096)
    except socket.timeout:
        continue
    if sys.argv[2].encode() in data:
        seen.add(source)
print(" ".join(sorted(seen)))
"""
RAW_SEND = ("import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)\n"
            "for _ in range(5):\n    s.sendto(sys.argv[2].encode(), (sys.argv[1], 0)); time.sleep(0.2)\n")


def test_vrrp_reaches_a_load_balancer_from_its_peers_only():
    """Every other host sends VRRP-protocol packets to each load balancer: only those of the other
    load balancers arrive (keepalived's advertisements need nothing else)."""
    lbs = names_of("loadbalancers")
    senders = [name for name in dict.fromkeys([*SOURCES, *lbs]) if name != "controller"]
    address = {name: get(name).ansible.get_variables()["ansible_host"] for name in senders}
    for target in lbs:
        marker = f"vrrp-probe-{target}-{os.getpid()}"
        lb = get(target)
        lb.run_test(f"cat > /tmp/vrrp_listen.py <<'EOF'\n{RAW_LISTEN}\nEOF")
        with lb.sudo():
            lb.run_test(f"rm -f /tmp/vrrp-seen; systemd-run --unit=fw-vrrp-probe --collect -p RuntimeMaxSec=60 "
                        f"-p StandardOutput=file:/tmp/vrrp-seen python3 /tmp/vrrp_listen.py 6 {marker}")
        time.sleep(1)
        for name in senders:
            if name != target:
                with get(name).sudo():
                    get(name).run_test("python3 -c %s %s %s", RAW_SEND, address[target], marker)
        seen = wait_for(lambda: lb.file("/tmp/vrrp-seen").exists and lb.file("/tmp/vrrp-seen").size > 0
                        and lb.file("/tmp/vrrp-seen").content_string.split(), 15, f"{target}'s VRRP probe")[0]
        assert set(seen) == {address[name] for name in lbs if name != target}, (target, seen)


def test_the_rules_come_back_when_a_server_restarts():
    """The iptables backend loads its rules at boot (netfilter-persistent): after a restart the
    rules are the same, the outsider is dropped again. (ufw's: the restart drill of the default
    scenario, which checks every service too.)"""
    name = names_of("webservers")[-1]
    server = get(name)
    if server.ansible.get_variables().get("firewall_backend", "ufw") == "ufw":
        pytest.skip("ufw's rules at boot: the restart drill (test_drills.py)")
    with server.sudo():
        before = server.check_output("iptables -S")
    docker("restart", "--time", "5", container(name))
    time.sleep(5)
    wait_for(lambda: reachable(server), 120, f"{name} answering SSH again")
    with server.sudo():
        after = server.check_output("iptables -S")
    assert "-P INPUT DROP" in after and after == before
    client = get("client")
    address = server.ansible.get_variables()["ansible_host"]
    assert client.check_output(f"python3 -c {shlex.quote(CONNECT)} {address} 9999") == "timeout"
