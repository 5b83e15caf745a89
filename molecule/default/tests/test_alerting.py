"""Alerting on the live lab: the blackbox probes, the rules Prometheus loaded, who reaches the
pages, and, in the drills, what a person is told when something breaks and when it is fixed.

What a person would have received is read from the lab's webhook receiver on the monitoring host
(lab/alert_receiver.py, installed by lab/support.yml): every Alertmanager notification, one JSON
line each in /var/lib/lab-alerts/alerts.jsonl. The lab evaluates fast (prometheus_alert_for 10s,
group_wait 5s, group_interval 10s: molecule.yml), so a notification arrives within a minute.
"""

import json
import shlex
import subprocess
import sys
import time
import urllib.parse
import uuid

import pytest

from conftest import SERVER_GROUPS, get, hosts_of, names_of, record_drill

testinfra_hosts = hosts_of("monitoring")[:1]
RECEIVED = "/var/lib/lab-alerts/alerts.jsonl"
# Rule groups and alerts the role ships (roles/prometheus/templates/rules/).
ALERTS = {
    "site": {"SiteNotAnswering2xx", "SiteHTTPSFailed", "CertificateExpiringSoon", "InternalHTTPSFailed",
             "WebServerOutOfPool", "TooFewHealthyWebServers", "Site5xxRatioHigh", "SiteTrafficCollapsed"},
    "databases": {"DatabaseDown", "ReplicationStopped", "ReplicationLagging", "SemiSyncFellBack",
                  "SeveralWritableDatabases", "NoWritableDatabase"},
    "hosts": {"TargetDown", "DiskFullSoon", "ClockNotSynchronised", "SecurityUpdatesPending", "AptMetricsStale",
              "MemoryPressure"},
}

GET = r"""
import json, sys, urllib.error, urllib.request
data = sys.argv[2].encode() if len(sys.argv) > 2 else None
request = urllib.request.Request(sys.argv[1], data=data, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=10) as answer:
        sys.stdout.write(answer.read().decode())
except urllib.error.HTTPError as exc:
    sys.exit(f"HTTP {exc.code}: {exc.read().decode()}")
"""

CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close(); print("open")
except ConnectionRefusedError: print("refused")
except OSError: print("timeout")
"""


def address(name):
    return get(name).ansible.get_variables()["ansible_host"]


def monitor_name(host):
    return host.ansible.get_variables()["inventory_hostname"]


def api(host, url, body=None):
    """A GET (or a POST of `body`) from the monitoring host itself."""
    args = [GET, url] + ([json.dumps(body)] if body is not None else [])
    return host.check_output("python3 -c %s" + " %s" * (len(args) - 1), *args)


def promql(host, query):
    """[(labels, value)] of an instant query against the monitoring host's Prometheus."""
    url = f"http://{address(monitor_name(host))}:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    body = json.loads(api(host, url))
    assert body["status"] == "success", body
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


def eventually(check, seconds, what, pause=2):
    """check() until it returns something true; its last value (fails the test naming `what`)."""
    deadline = time.time() + seconds
    while True:
        got = check()
        if got or time.time() > deadline:
            break
        time.sleep(pause)
    assert got, f"not within {seconds} s: {what}"
    return got


# --- Probes and rules ----------------------------------------------------------------------

def probes(host, job):
    return {labels["instance"]: value for labels, value in promql(host, f'probe_success{{job="{job}"}}')}


def test_the_site_answers_through_every_load_balancer_with_a_valid_certificate(host):
    lbs = set(names_of("loadbalancers"))
    eventually(lambda: all(probes(host, "blackbox_site").get(lb) == 1 for lb in lbs), 90,
               f"probe_success 1 for the site through each of {sorted(lbs)}: {probes(host, 'blackbox_site')}")
    expiry = {labels["instance"]: value for labels, value in promql(
        host, 'probe_ssl_earliest_cert_expiry{job="blackbox_site"} - time()')}
    assert set(expiry) == lbs and all(seconds > 86400 for seconds in expiry.values()), expiry
    versions = {(labels["instance"], labels["version"]) for labels, _ in promql(
        host, 'probe_tls_version_info{job="blackbox_site"} == 1')}
    assert {lb for lb, _ in versions} == lbs and {v for _, v in versions} <= {"TLS 1.2", "TLS 1.3"}, versions
    status = {labels["instance"]: value for labels, value in promql(host, 'probe_http_status_code{job="blackbox_site"}')}
    assert all(200 <= code < 300 for code in status.values()) and set(status) == lbs, status


def test_each_web_servers_internal_https_verifies_against_the_internal_ca(host):
    webs = set(names_of("webservers"))
    eventually(lambda: all(probes(host, "blackbox_internal").get(web) == 1 for web in webs), 90,
               f"probe_success 1 for the internal HTTPS of {sorted(webs)}: {probes(host, 'blackbox_internal')}")


def test_prometheus_loaded_every_rule_and_sends_to_its_alertmanager(host):
    base = f"http://{address(monitor_name(host))}"
    groups = json.loads(api(host, f"{base}:9090/api/v1/rules"))["data"]["groups"]
    loaded = {g["name"]: {r["name"] for r in g["rules"]} for g in groups}
    assert loaded == ALERTS
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule
            assert rule["labels"]["severity"] in ("critical", "warning"), rule
            assert rule["annotations"]["summary"] and rule["annotations"]["runbook_url"].split("#")[1], rule
    managers = json.loads(api(host, f"{base}:9090/api/v1/alertmanagers"))["data"]["activeAlertmanagers"]
    assert [m["url"] for m in managers] == [f"{base}:9093/api/v2/alerts"]


def test_no_critical_alert_fires_on_the_healthy_site(host):
    firing = promql(host, 'ALERTS{alertstate="firing",severity="critical"}')
    assert not firing, [labels for labels, _ in firing]


@pytest.mark.parametrize("name", names_of(*SERVER_GROUPS))
def test_pending_updates_are_counted_by_origin_on_every_server(host, name):
    """What SecurityUpdatesPending reads: the node exporter's apt collector, on its timer.

    The collector's file always carries the package lists' age; with nothing pending it writes
    apt_upgrades_pending with empty labels, which Debian 13's node exporter (1.9) leaves out, so
    only series with an origin count."""
    got = eventually(lambda: promql(host, f'apt_package_cache_timestamp_seconds{{instance="{name}"}}'), 120,
                     f"the apt collector's figures of {name} in Prometheus")
    assert all(value > 0 for _, value in got), got
    pending = promql(host, f'apt_upgrades_pending{{instance="{name}"}}')
    assert all("origin" in labels for labels, value in pending if value > 0), pending
    assert get(name).service("prometheus-node-exporter-apt.timer").is_enabled


# --- Who reaches the pages -----------------------------------------------------------------

def test_prometheus_and_alertmanager_listen_on_the_hosts_address_the_prober_on_loopback(host):
    mine = address(monitor_name(host))
    for port, expected in ((9090, f"{mine}:9090"), (9093, f"{mine}:9093"), (9115, "127.0.0.1:9115")):
        listeners = [line.split()[3] for line in host.check_output(f"ss -Hltn 'sport = :{port}'").splitlines()]
        assert listeners == [expected], f"port {port}: {listeners}"


SOURCES = [*names_of(*SERVER_GROUPS), "client"]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("port", [9090, 9093])
def test_no_server_reaches_the_monitoring_pages(host, source, port):
    target = address(monitor_name(host))
    got = get(source).check_output("python3 -c %s %s %s", CONNECT, target, str(port))
    assert got == "timeout", f"{source} reached {target}:{port} ({got}): only admins and monitoring hosts may"


@pytest.mark.parametrize("port", [9090, 9093])
def test_the_admin_reaches_the_monitoring_pages(host, port):
    """The controller is in infra_admin_networks (molecule.yml)."""
    target = address(monitor_name(host))
    got = subprocess.run([sys.executable, "-c", CONNECT, target, str(port)], capture_output=True, text=True,
                         timeout=30, check=True).stdout.strip()
    assert got == "open", f"the controller could not reach {target}:{port} ({got})"


# --- What a person receives ----------------------------------------------------------------

def clock(host):
    return float(host.check_output("date +%s.%N"))


def received(host, since):
    """Every notification the receiver recorded since a time of the monitoring host's clock."""
    with host.sudo():
        text = host.run(f"cat {RECEIVED}").stdout
    return [n for n in (json.loads(line) for line in text.splitlines() if line.strip()) if n["received"] >= since]


def told(host, since, alertname, status, match, seconds):
    """Wait for a notification holding this alert in this status; (the notification, the alert)."""
    def find():
        for notification in received(host, since):
            for alert in notification["alerts"]:
                if alert["labels"]["alertname"] == alertname and alert["status"] == status and match(alert):
                    return notification, alert
        return None
    return eventually(find, seconds, f"a {status} notification of {alertname}", pause=1)


def test_an_alert_goes_to_the_receiver_and_so_does_its_resolution(host):
    """Alertmanager's route, receiver and send_resolved, without breaking anything: an alert of
    our own through its API, firing then ended."""
    base = f"http://{address(monitor_name(host))}:9093/api/v2/alerts"
    tag = uuid.uuid4().hex[:8]
    alert = {"labels": {"alertname": "LabPipelineCheck", "severity": "warning", "instance": monitor_name(host),
                        "check": tag},
             "annotations": {"summary": f"pipeline check {tag}"}}
    since = clock(host)
    api(host, base, [alert])
    notification, got = told(host, since, "LabPipelineCheck", "firing", lambda a: a["labels"].get("check") == tag, 60)
    assert notification["receiver"] == "warning" and got["annotations"]["summary"] == f"pipeline check {tag}"
    ended = host.check_output("date -u +%Y-%m-%dT%H:%M:%S.000Z")
    api(host, base, [dict(alert, endsAt=ended)])
    told(host, since, "LabPipelineCheck", "resolved", lambda a: a["labels"].get("check") == tag, 60)


# --- Drills: break something, a person is told; repair it, they are told again ---------------

def mariadb(server, sql):
    with server.sudo():
        return server.check_output(f"mariadb -N -e {shlex.quote(sql)}")


@pytest.mark.drill
def test_a_replica_whose_replication_stops_is_told_and_so_is_its_repair(host):
    replica = names_of("db_replica")[0]
    server = get(replica)
    since = clock(host)
    mariadb(server, "STOP SLAVE")
    stopped = time.time()
    try:
        _, alert = told(host, since, "ReplicationStopped", "firing", lambda a: a["labels"]["instance"] == replica, 120)
        told_after = time.time() - stopped
        assert replica in alert["annotations"]["summary"] and alert["labels"]["severity"] == "critical", alert
        assert alert["annotations"]["runbook_url"].endswith("#replicationstopped")
    finally:
        mariadb(server, "START SLAVE")
    started = time.time()
    told(host, since, "ReplicationStopped", "resolved", lambda a: a["labels"]["instance"] == replica, 120)
    record_drill("replication stopped: told", {"replica": replica, "told_s": round(told_after, 1),
                                              "resolved_told_s": round(time.time() - started, 1)})
    assert told_after <= 120


@pytest.mark.drill
def test_a_web_server_out_of_the_pool_is_told_and_so_is_its_return(host):
    web = names_of("webservers")[-1]
    server = get(web)
    lbs = set(names_of("loadbalancers"))
    since = clock(host)
    with server.sudo():
        server.run_test("systemctl stop nginx")
    stopped = time.time()
    try:
        for lb in sorted(lbs):
            _, alert = told(host, since, "WebServerOutOfPool", "firing",
                            lambda a, lb=lb: a["labels"]["server"] == web and a["labels"]["instance"] == lb, 120)
            assert web in alert["annotations"]["summary"] and lb in alert["annotations"]["summary"], alert
        told_after = time.time() - stopped
        told(host, since, "InternalHTTPSFailed", "firing", lambda a: a["labels"]["instance"] == web, 60)
    finally:
        with server.sudo():
            server.run_test("systemctl start nginx")
    started = time.time()
    for lb in sorted(lbs):
        told(host, since, "WebServerOutOfPool", "resolved",
             lambda a, lb=lb: a["labels"]["server"] == web and a["labels"]["instance"] == lb, 120)
    record_drill("web server out of the pool: told", {"web": web, "told_s": round(told_after, 1),
                                                      "resolved_told_s": round(time.time() - started, 1)})
