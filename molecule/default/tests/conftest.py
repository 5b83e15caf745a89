"""Helpers shared by the scenario's testinfra tests."""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab"))
from labctl import container_name  # noqa: E402  pylint: disable=wrong-import-position

# The inventory's group of every server site.yml configures (its children: the role groups).
SERVER_GROUPS = ("servers",)
# The site's page names the web server that answered: <... id="server">web-01<...
SERVED_BY = re.compile(r'id="server">([a-z0-9-]+)<')


def hosts_of(*groups):
    """Inventory hosts of these groups, each once, as testinfra host specs."""
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    names = sorted({h for g in groups for h in runner.get_hosts(g)})
    assert names, f"no host in groups {groups}: the tests would prove nothing"
    return [f"ansible://{name}" for name in names]


SERVERS = hosts_of(*SERVER_GROUPS)
ROOT = Path(__file__).resolve().parents[3]


def site_setting(name):
    """A site setting as the plays see it: the inventory's value, else the site's group_vars/all,
    else the owning role's default, else its fixed value (vars/main.yml). Tests read the site
    name, ports, paths and names from here."""
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    inventory = runner.get_variables(runner.get_hosts("all")[0])
    if name in inventory:
        return inventory[name]
    for path in [*sorted((ROOT / "group_vars" / "all").glob("*.yml")), *sorted(ROOT.glob("roles/*/defaults/main.yml")),
                 *sorted(ROOT.glob("roles/*/vars/main.yml"))]:
        values = yaml.safe_load(path.read_text()) or {}
        if name in values:
            value = values[name]
            assert "{{" not in str(value), f"{name} is a template in {path}: the tests cannot read it"
            return value
    raise KeyError(f"no inventory variable, site setting or role default named {name}")


# The site every visitor asks for.
SITE = site_setting("infra_site_name")


def get(name):
    """testinfra host of an inventory host, by name."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def sql(server, query, database=""):
    """Run SQL as the server's root (local socket); rows as lists of strings."""
    with server.sudo():
        out = server.check_output(f"mariadb -N -B {database} -e {json.dumps(query)}")
    return [line.split("\t") for line in out.splitlines()]


def address(name):
    """The address Ansible reaches an inventory host at (its ansible_host)."""
    return get(name).ansible.get_variables()["ansible_host"]


# Run on a host with `python3 -c CONNECT ADDRESS PORT`: whether a TCP connection opens ("open"),
# is refused (nothing listens: "refused") or gets no answer (dropped: "timeout").
CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close(); print("open")
except ConnectionRefusedError: print("refused")
except OSError: print("timeout")
"""


def names_of(*groups):
    """Inventory host names of these groups."""
    return [spec.split("//")[1] for spec in hosts_of(*groups)]


def playbook(*args, path="site.yml", inventory=None):
    """Run a playbook against the scenario's hosts, as an operator would."""
    inventory = inventory or os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(["ansible-playbook", "-i", str(inventory), path, *args],
                          cwd=os.environ["MOLECULE_PROJECT_DIRECTORY"], env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def certbot_issuer():
    """The load balancer whose certbot asks the CA: the inventory's certbot_issuer, else the
    group's first in inventory order (the role's default)."""
    listed = json.loads(subprocess.run(["ansible-inventory", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--list"],
                                       capture_output=True, text=True, check=True, timeout=120).stdout)
    first = listed["loadbalancers"]["hosts"][0]
    return listed["_meta"]["hostvars"].get(first, {}).get("certbot_issuer", first)


def site_address(client):
    """The address the site's name leads a client to: the load balancers' floating address."""
    return client.check_output(f"getent hosts {SITE}").split()[0]


def holders(site_ip, skip=()):
    """The load balancers that hold an address (ip addr); those in `skip` (a killed one) not asked."""
    return [name for name in names_of("loadbalancers")
            if name not in skip and f" {site_ip}/" in get(name).check_output("ip -o -4 addr show")]


def wait_for(check, seconds, what, pause=0.5):
    """check() until it returns something true; (its value, seconds it took); fails naming `what`."""
    started = time.time()
    while True:
        got = check()
        if got or time.time() - started > seconds:
            break
        time.sleep(pause)
    assert got, f"not within {seconds} s: {what}"
    return got, time.time() - started


def move_site_address(site_ip, to):
    """Put the floating address on load balancer `to`: keepalived restarted where it is, so a
    peer takes it (nopreempt: the restarted node does not take it back)."""
    for _ in range(len(names_of("loadbalancers"))):
        held = holders(site_ip)
        if held == [to]:
            return
        for name in held:
            with get(name).sudo():
                get(name).run_test("systemctl restart keepalived")
        wait_for(lambda: holders(site_ip) not in ([], held), 15, f"a peer takes {site_ip} from {held}", 0.2)
    assert holders(site_ip) == [to], f"the site's address {site_ip} stays on {holders(site_ip)}, not {to}"


def serial_at(client, at):
    """The serial of the site's certificate as a load balancer's address (or the site's) serves it."""
    return client.check_output(f"echo | openssl s_client -connect {at}:443 -servername {SITE} 2>/dev/null "
                               "| openssl x509 -noout -serial")


def recap(run):
    """{host: changed count} from a playbook run's recap."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    return {host: int(changed) for host, changed in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", plain, re.M)}


def served_by(body):
    """The web server that answered, from the page's body (None if the page does not say)."""
    match = SERVED_BY.search(body)
    return match.group(1) if match else None


def container(name):
    """The Docker container of a scenario host."""
    return container_name(os.environ.get("MOLECULE_LAB_PREFIX", "mol"), name)


def replica_threads_run(server):
    """Both replication threads of a database replica run (SHOW SLAVE STATUS, as root)."""
    with server.sudo():
        status = server.check_output("mariadb -e 'SHOW SLAVE STATUS\\G'")
    return "Slave_IO_Running: Yes" in status and "Slave_SQL_Running: Yes" in status


def reachable(server):
    """Whether a fresh command gets through to the server (it may be rebooting)."""
    try:
        return server.run("true").rc == 0
    except Exception:  # pylint: disable=broad-except  (the connection itself fails while it reboots)
        return False


def docker(*args):
    """Run a docker command on the controller (a scenario host's container killed, started, a
    command run in it from outside); its completed process, output included."""
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=120)


# A client's steady load through the load balancer: one request at a time, each on a new
# connection (a TLS handshake each), at most LOAD_RATE a second (one client under the load
# balancer's per-source rate limit, 1000 requests per 10 s by default), until the seconds pass
# or the stop file appears. One line per request, "time status served-by", then "done".
LOAD_RATE = 40
LOAD = r"""
import os, re, subprocess, sys, time
end, out_path, stop = time.time() + float(sys.argv[1]), sys.argv[2], sys.argv[2] + ".stop"
url = sys.argv[5]
served_by = re.compile(sys.argv[3])
pace = 1.0 / float(sys.argv[4])
with open(out_path, "w") as out:
    while time.time() < end and not os.path.exists(stop):
        started = time.time()
        got = subprocess.run(["curl", "-sk", "--max-time", "10", "-w", "\n%{http_code}", url],
                             capture_output=True, text=True).stdout
        ended = time.time()
        body, _, code = got.rpartition("\n")
        server = served_by.search(body)
        out.write(f"{started:.3f} {code or '000'} {server.group(1) if server else '-'} {ended:.3f}\n"); out.flush()
        time.sleep(max(0.0, started + pace - time.time()))
    out.write("done\n")
"""


class Load:
    """LOAD running on a host (the scenario's `client`): start, stop, read its requests."""

    def __init__(self, host, seconds, path="/tmp/load.out"):
        self.host, self.seconds, self.path = host, seconds, path
        host.run_test(f"cat > /tmp/load.py <<'EOF'\n{LOAD}\nEOF")
        host.run_test(f"rm -f {path} {path}.stop; setsid -f python3 /tmp/load.py {seconds} {path} "
                      f"{shlex.quote(SERVED_BY.pattern)} {LOAD_RATE} https://{SITE}/ > /dev/null 2>&1 < /dev/null")

    def finish(self, stop=False, ends=False):
        """Wait for the load to end (or end it now); [(time, status, served_by)] of every request,
        its start time first; ends=True: [(time, status, served_by, end time)]."""
        if stop:
            self.host.run_test(f"touch {self.path}.stop")
        deadline = time.time() + (15 if stop else self.seconds + 30)
        while time.time() < deadline and not (self.host.file(self.path).exists
                                              and self.host.file(self.path).contains("^done")):
            time.sleep(0.5)
        lines = self.host.file(self.path).content_string.splitlines()
        assert lines and lines[-1] == "done", "the load did not finish"
        requests = [(float(t), code, server, float(end)) for t, code, server, end in (line.split() for line in lines[:-1])]
        return requests if ends else [r[:3] for r in requests]


def record_drill(name, figures):
    """Keep a drill's figures in .cache/drills-<scenario prefix>.json (`make molecule` and `make test` print them)."""
    path = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".cache" / \
        f"drills-{os.environ.get('MOLECULE_LAB_PREFIX', 'mol')}.json"
    path.parent.mkdir(exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=2) + "\n")


def pytest_configure(config):
    config.addinivalue_line("markers", "drill(first=False, last=False): disruptive test, after all "
                                       "the others; first=True: before the other drills; last=True: after them")
    config.addinivalue_line("markers", "firewall: what the firewall backend changes (the traffic matrix): the default "
                                       "scenario (ufw) and the iptables scenario both run it")


def pytest_collection_modifyitems(session, config, items):
    """Disruptive drills (a server killed) run last, whatever their module; those that need every
    server healthy (the overload drills) first among them; the database failover, which swaps
    the servers' roles, after every other drill."""
    def order(item):
        marker = item.get_closest_marker("drill")
        if marker is None:
            return 0
        return 1 if marker.kwargs.get("first") else 3 if marker.kwargs.get("last") else 2
    items.sort(key=order)


def pytest_sessionfinish(session, exitstatus):
    """A verify run in which no test passed proves nothing: fail it."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and passed == 0:
        session.exitstatus = 1


@pytest.fixture(scope="session")
def lab_key():
    """The scenario's private SSH key (made by lab/labctl.py at create)."""
    prefix = os.environ.get("MOLECULE_LAB_PREFIX", "mol")
    key = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".lab" / prefix / "ssh" / "id_ed25519"
    assert key.exists(), f"missing lab key {key}"
    return key


@pytest.fixture
def ssh_from_controller(host, lab_key):
    """Run a command over a fresh SSH connection from the controller, with extra ssh options."""
    address = host.ansible.get_variables()["ansible_host"]

    def run(*options, user="ops", command="true", key=lab_key):
        cmd = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
               "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
               *options, f"{user}@{address}", command]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    return run
