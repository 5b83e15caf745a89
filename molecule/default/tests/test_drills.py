"""Failure drills on the live servers, each under a steady HTTPS load from `client`, each
reporting its figure (record_drill: .cache/drills-<scenario prefix>.json, printed by
`make drills`):

- a web server's container killed: zero failed client requests;
- a web server's container restarted: zero failed client requests, and every service, firewall
  rule, replication link and exporter comes back by itself;
- bad input: malformed policies and variable files each stop the run naming the field, and no
  host changed (their state compared before and after).

The ACME-down drill is in test_https.py, the database failover drill in test_db.py.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import (Load, SERVED_BY, SERVER_GROUPS, SITE, container, docker, get, names_of, playbook, record_drill,
                      reachable, replica_threads_run, wait_for)

pytestmark = pytest.mark.drill
testinfra_hosts = ["ansible://client"]


@pytest.fixture
def steady_load(host):
    """Start a load of `seconds` (conftest.LOAD); return a function that waits for it and counts the codes."""
    def start(seconds):
        load = Load(host, seconds)
        time.sleep(2)

        def finish():
            codes = [code for _, code, _ in load.finish()]
            return {code: codes.count(code) for code in set(codes)}
        return finish
    return start


def serving_hosts(client, count=20):
    """Which web servers answered `count` requests through the load balancer."""
    out = client.check_output(f"for i in $(seq {int(count)}); do curl -sk https://{SITE}/; done")
    return set(SERVED_BY.findall(out))


def test_a_web_servers_container_killed_under_load_costs_no_request(host, steady_load):
    webs = set(names_of("webservers"))
    web = sorted(webs)[-1]
    finish = steady_load(20)
    docker("kill", container(web))
    killed = time.time()
    try:
        counts = finish()
        survivors = serving_hosts(host)
    finally:
        docker("start", container(web))
    wait_for(lambda: web in serving_hosts(host, 10), 120, f"{web} serving again after a start")
    failed = sum(n for c, n in counts.items() if c != "200")
    record_drill("web container killed under load", {"requests": sum(counts.values()), "failed": failed,
                                               "serving_again_after_start_s": round(time.time() - killed, 1)})
    assert failed == 0 and counts.get("200", 0) > 20, counts
    assert survivors == webs - {web}


def test_a_restarted_server_brings_everything_back_by_itself(host, steady_load):
    web = names_of("webservers")[-1]
    server = get(web)
    groups = server.ansible.get_variables()["group_names"]
    finish = steady_load(25)
    started = time.time()
    docker("restart", "--time", "5", container(web))
    time.sleep(5)
    wait_for(lambda: reachable(server), 120, f"{web} answering SSH again")
    counts = finish()
    back = {}
    # Services, by themselves.
    units = ["nginx", "chrony", "prometheus-node-exporter"] + (["prometheus-nginx-exporter"] if "webservers" in groups
                                                               else [])
    if {"db_primary", "db_replica"} & set(groups):
        units += ["mariadb", "prometheus-mysqld-exporter"]
    for unit in units:
        wait_for(lambda u=unit: server.service(u).is_running, 60, f"{unit} running on {web}")
    back["services_s"] = round(time.time() - started, 1)
    # The firewall, default deny, loaded at boot: the outsider is dropped, the load balancer admitted.
    with server.sudo():
        rules = server.check_output("iptables -S INPUT")
    assert "-P INPUT DROP" in rules, rules
    address = server.ansible.get_variables()["ansible_host"]
    assert host.run(f"curl -sk -o /dev/null --connect-timeout 3 https://{address}/").rc == 28
    assert get(names_of("loadbalancers")[0]).run(f"curl -sk -o /dev/null --connect-timeout 3 "
                                                 f"-H 'Host: {SITE}' https://{address}/").rc == 0
    # Replication, reconnected by itself, semi-synchronous again.
    if "db_replica" in groups:
        wait_for(lambda: replica_threads_run(server), 60, f"replication running on {web}")
        primary = get(names_of("db_primary")[0])

        def semisync_clients():
            with primary.sudo():
                out = primary.check_output("mariadb -N -e \"SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'\"")
            return int(out.split()[-1]) == len(names_of("db_replica"))
        wait_for(semisync_clients, 60, "the primary has every semi-sync replica back")
        back["replication_s"] = round(time.time() - started, 1)
    # Back in the load balancer's pool.
    wait_for(lambda: web in serving_hosts(host, 10), 60, f"{web} serving again")
    back["serving_s"] = round(time.time() - started, 1)
    failed = sum(n for c, n in counts.items() if c != "200")
    record_drill("server restarted under load", {"requests": sum(counts.values()), "failed": failed, **back})
    assert failed == 0, counts


# --- Bad input ------------------------------------------------------------------------------

# The cases shared with the unit tests (tests/bad_input.yml) that this drill runs.
BAD_INPUT = [(case["vars"], case["says"])
             for case in yaml.safe_load((Path(__file__).resolve().parents[3] / "tests" / "bad_input.yml").read_text())
             if case.get("drill")]

STATE = r"""
set -u
cd /
{ for f in /etc/nginx/nginx.conf /etc/haproxy/haproxy.cfg /etc/ufw/user.rules /etc/ufw/user6.rules \
           /etc/iptables/rules.v4 /etc/iptables/rules.v6 /etc/ssh/sshd_config /etc/ssh/sshd_config.d/* \
           /etc/mysql/mariadb.conf.d/6* /etc/default/prometheus-* /etc/otelcol-sumo/conf.d/* /etc/chrony/chrony.conf \
           /etc/sysctl.d/60-infra-* /etc/systemd/system/*.service.d/infra-limits.conf; do
    [ -f "$f" ] && sha256sum "$f"; done
  dpkg-query -W -f '${Package} ${Version}\n'
  # apt-listchanges.timer (Debian 13) disables itself at its first hourly run: Debian's, not ours.
  systemctl list-unit-files --state=enabled --no-legend --plain | awk '$1 != "apt-listchanges.timer" {print $1}'
  iptables -S; getent passwd | cut -d: -f1
} | sha256sum | cut -d' ' -f1
"""


def host_state():
    """A fingerprint of every server: managed files, packages, running services, rules, users."""
    out = {}
    for name in names_of(*SERVER_GROUPS):
        server = get(name)
        with server.sudo():
            out[name] = server.check_output("bash -c %s", STATE)
    return out


def test_bad_input_stops_every_run_naming_the_field_and_changes_no_host(tmp_path):
    before = host_state()

    def attempt(case):
        number, (variables, field) = case
        path = tmp_path / f"bad-{number}.yml"
        path.write_text(yaml.safe_dump(variables))
        run = playbook("-e", f"@{path}")
        said = " ".join((run.stdout + run.stderr).split())
        return field, run.returncode, field in said, "PLAY [Common baseline" in run.stdout

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(attempt, enumerate(BAD_INPUT)))
    after = host_state()
    record_drill("bad input", {"cases": len(BAD_INPUT), "stopped_naming_the_field": sum(
        1 for _, rc, named, reached in results if rc != 0 and named and not reached),
        "hosts_changed": sorted(n for n in before if before[n] != after[n])})
    assert len(BAD_INPUT) >= 20
    for field, rc, named, reached in results:
        assert rc != 0 and named and not reached, f"{field}: rc {rc}, named {named}, reached the hosts {reached}"
    assert before == after, "a run with bad input changed a host"
