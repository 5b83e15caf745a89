"""Monitoring on the live servers: the exporters that Prometheus scrapes, QPS under load, and the
Sumo Logic collector's configuration checked against what really answers and exists.

Requests go from `client` through the load balancer. The exporters are read from the monitoring
host, because no other host may reach them.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.parse

import pytest
import yaml

from conftest import SERVER_GROUPS, SITE, address, get, holders, names_of, site_address, site_setting

REQUESTS = 200
testinfra_hosts = ["ansible://monitor"]


FETCH = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"


def fetch(host, url):
    """GET a URL from a host that has python3 but maybe no curl (the monitoring host)."""
    return host.check_output("python3 -c %s %s", FETCH, url)


def metrics(monitor, name, port):
    """Samples of an exporter, read from the monitoring host: {'metric{labels}': value}."""
    text = fetch(monitor, f"http://{address(name)}:{port}/metrics")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def total(samples, pattern):
    """Sum of the samples whose 'metric{labels}' matches the regular expression."""
    return sum(value for key, value in samples.items() if re.fullmatch(pattern, key))


def promql(monitor, query):
    """Instant query against the monitoring host's Prometheus: [(labels, value)]."""
    url = f"http://{monitor.ansible.get_variables()['ansible_host']}:9090/api/v1/query?"  # its own address only
    body = json.loads(fetch(monitor, url + urllib.parse.urlencode({"query": query})))
    assert body["status"] == "success", body
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


def load(count):
    """`count` HTTPS requests from the client through the load balancer; their status codes.

    Without verifying the certificate: test_https proves it, and pebble's roots change whenever
    it restarts (test_https restarts it), so a root fetched now may not match the one served.
    """
    urls = " ".join([f"-o /dev/null https://{SITE}/?qps-probe={i}" for i in range(count)])
    out = get("client").check_output(f"curl -sk -w '%{{http_code}}\\n' {urls}")
    return out.split()


# --- Exporters ------------------------------------------------------------------------------

def exporters_of(name):
    groups = get(name).ansible.get_variables()["group_names"]
    ports = {"node": site_setting("exporters_node_port")}
    if "webservers" in groups:
        ports["nginx"] = site_setting("exporters_nginx_port")
    if {"db_primary", "db_replica"} & set(groups):
        ports["mysqld"] = site_setting("exporters_mysqld_port")
    if "loadbalancers" in groups:
        ports["haproxy"] = site_setting("haproxy_metrics_port")
    return ports


SERVERS = names_of(*SERVER_GROUPS)
# The backup hosts run the node exporter too (outside the servers: its own access table).
BACKUP_HOSTS = [name for name in names_of(site_setting("backup_host_group")) if name not in SERVERS]
EXPORTERS = [(name, kind, port) for name in SERVERS + BACKUP_HOSTS for kind, port in exporters_of(name).items()]


@pytest.mark.parametrize("name, kind, port", EXPORTERS, ids=[f"{n}-{k}" for n, k, _ in EXPORTERS])
def test_exporter_listens_on_the_host_address_only_and_reports_its_service(host, name, kind, port):
    server = get(name)
    listeners = [line.split()[3] for line in server.check_output(f"ss -Hltn 'sport = :{port}'").splitlines()]
    assert listeners == [f"{address(name)}:{port}"], f"{kind} exporter on {name} listens on {listeners}"
    samples = metrics(host, name, port)
    up = {"node": r"node_uname_info\{.*\}", "nginx": r"nginx_up", "mysqld": r"mysql_up",
          "haproxy": r"haproxy_process_nbproc|haproxy_process_start_time_seconds"}[kind]
    assert total(samples, up) > 0, f"{kind} exporter on {name} does not report its service"


@pytest.mark.parametrize("name, kind, port", EXPORTERS, ids=[f"{n}-{k}" for n, k, _ in EXPORTERS])
def test_exporter_is_unreachable_from_the_client(name, kind, port):
    result = get("client").run(f"curl -s -o /dev/null --connect-timeout 3 http://{address(name)}:{port}/metrics")
    assert result.rc == 28, f"client reached the {kind} exporter of {name} (curl rc {result.rc}): only `monitoring` may"


def test_the_mysqld_exporter_account_reads_status_and_no_data():
    """It authenticates by its system user (no password anywhere) and cannot read a table."""
    db = get(names_of("db_primary")[0])
    with db.sudo():
        assert db.check_output("sudo -u prometheus mariadb -N -e 'SELECT CURRENT_USER()'") == "prometheus@localhost"
        denied = db.run("sudo -u prometheus mariadb -N -e 'SELECT COUNT(*) FROM mysql.user'")
        assert denied.rc != 0 and "denied" in denied.stderr
        assert db.run("mariadb -u prometheus -h 127.0.0.1 -e 'SELECT 1'").rc != 0, "reachable over TCP"


def test_prometheus_reads_the_binary_log_archive_of_each_backup_host(host):
    """The archive's state and lag, written for the backup host's node exporter (textfile
    collector) at every check, reach Prometheus: the archive follows the primary."""
    primary = names_of("db_primary")[0]
    for name in names_of(site_setting("backup_host_group")):
        deadline = time.time() + 60
        while True:
            up = promql(host, f'infra_binlog_archive_up{{instance="{name}"}}')
            lag = promql(host, f'infra_binlog_archive_lag_bytes{{instance="{name}"}}')
            if (up and lag) or time.time() > deadline:
                break
            time.sleep(5)
        assert [(labels.get("primary"), value) for labels, value in up] == [(primary, 1.0)], up
        assert len(lag) == 1 and lag[0][1] >= 0, lag


# --- QPS under load ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def load_run(host):
    """Counters of every web server and of HAProxy's per-server responses (on the load balancer
    holding the site's address), before and after a load."""
    webs = names_of("webservers")
    lb = holders(site_address(get("client")))[0]

    def snapshot():
        nginx = {web: total(metrics(host, web, site_setting("exporters_nginx_port")), r"nginx_http_requests_total") for web in webs}
        haproxy = metrics(host, lb, site_setting("haproxy_metrics_port"))
        responses = {web: total(haproxy, rf'haproxy_server_http_responses_total\{{.*proxy="web".*server="{web}".*\}}')
                     for web in webs}
        return nginx, responses

    before = snapshot()
    codes = load(REQUESTS)
    after = snapshot()
    return {"codes": codes, "before": before, "after": after, "webs": webs}


def test_every_request_of_the_load_succeeded(load_run):
    assert load_run["codes"].count("200") == REQUESTS, load_run["codes"]


def test_nginx_request_counters_grew_by_each_servers_share(load_run):
    share = REQUESTS / len(load_run["webs"])
    for web in load_run["webs"]:
        grew = load_run["after"][0][web] - load_run["before"][0][web]
        # Round robin gives each server its share; HAProxy's health checks (every 2 s) and the
        # exporters' own reads add a few requests on top.
        assert share - 2 <= grew <= share + 30, f"{web}: nginx_http_requests_total grew by {grew}, share {share}"


def test_haproxy_per_server_response_counters_grew_by_each_servers_share(load_run):
    share = REQUESTS / len(load_run["webs"])
    for web in load_run["webs"]:
        grew = load_run["after"][1][web] - load_run["before"][1][web]
        assert share - 2 <= grew <= share + 2, f"{web}: HAProxy responses grew by {grew}, share {share}"


def test_prometheus_returns_a_rate_above_zero_for_each_web_server(host, load_run):
    """Through Prometheus itself, as `make qps` and the README's queries use it."""
    webs = set(load_run["webs"])
    deadline = time.time() + 60
    while True:
        nginx = dict((r["instance"], v) for r, v in promql(host, "sum by (instance) (rate(nginx_http_requests_total[1m]))"))
        lb = dict((r["server"], v) for r, v in promql(
            host, 'sum by (server) (rate(haproxy_server_http_responses_total{proxy="web"}[1m]))'))
        if all(nginx.get(w, 0) > 0 and lb.get(w, 0) > 0 for w in webs) or time.time() > deadline:
            break
        time.sleep(2)
    for web in webs:
        assert nginx.get(web, 0) > 0, f"no nginx request rate for {web}: {nginx}"
        assert lb.get(web, 0) > 0, f"no HAProxy response rate for {web}: {lb}"


def test_make_qps_prints_each_web_server_and_the_load_balancer(load_run):
    """The operator's view: lab/qps.py against this scenario's Prometheus, one sample."""
    root = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    out = subprocess.run([sys.executable, os.path.join(root, "lab", "qps.py"), "--url",
                          f"http://{address('monitor')}:9090", "--once"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    for web in load_run["webs"]:
        row = re.search(rf"^{web}\s+([0-9.]+)\s+([0-9.]+)", out, re.M)
        assert row and float(row.group(1)) > 0, out
    assert re.search(r"^load balancer\s+[0-9.]+", out, re.M), out


# --- The Sumo Logic collector's configuration ------------------------------------------------

def sources(server):
    """Every receiver in the collector's conf.d: [(file, type/name, settings)]."""
    with server.sudo():
        paths = server.check_output("ls /etc/otelcol-sumo/conf.d/").split()
        found = []
        for path in paths:
            doc = yaml.safe_load(server.file(f"/etc/otelcol-sumo/conf.d/{path}").content_string) or {}
            found += [(path, name, settings) for name, settings in (doc.get("receivers") or {}).items()]
    return found


def env_file(server, name):
    with server.sudo():
        text = server.file(f"/etc/otelcol-sumo/env/{name}").content_string
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def check_source(server, kind, settings):
    """Prove one receiver's endpoint answers (or its files exist); a new kind must get a check."""
    if kind == "hostmetrics":
        assert settings["scrapers"], "no host metrics"
    elif kind == "nginx":
        assert "Active connections" in server.check_output(f"curl -sSf {shlex.quote(settings['endpoint'])}")
    elif kind == "haproxy":
        csv = server.check_output(f"curl -sSf {shlex.quote(settings['endpoint'] + ';csv')}")
        assert csv.startswith("# pxname") and "\nweb," in csv
    elif kind == "mysql":
        password = env_file(server, "mysql.env")["SUMOLOGIC_MYSQL_PASSWORD"]
        assert settings["password"] == "${env:SUMOLOGIC_MYSQL_PASSWORD}", "the password must come from the env file"
        assert settings["transport"] == "unix"
        out = server.check_output(f"mariadb -N -S {settings['endpoint']} -u {settings['username']} "
                                  f"-p{shlex.quote(password)} -e \"SHOW GLOBAL STATUS LIKE 'Uptime'\"")
        assert out.startswith("Uptime")
    elif kind == "filelog":
        for pattern in settings["include"]:
            with server.sudo():
                assert server.check_output(f"ls {pattern}"), f"{pattern} does not exist"
    elif kind == "journald":
        facilities = ",".join({m["SYSLOG_FACILITY"] for m in settings["matches"]})
        assert facilities and set(facilities.split(",")) <= {"4", "10"}
        with server.sudo():
            # Our own SSH logins and sudo calls are authentication events: there must be some.
            assert server.check_output(f"journalctl -q --no-pager -n 5 --facility={facilities}"), "no auth events"
    else:
        pytest.fail(f"no check for collector receiver type '{kind}': add one")


@pytest.mark.parametrize("name", SERVERS)
def test_every_collector_source_answers_or_exists(name):
    server = get(name)
    found = sources(server)
    kinds = {receiver.split("/")[0] for _, receiver, _ in found}
    expected = {"hostmetrics", "journald", "filelog"}
    groups = server.ansible.get_variables()["group_names"]
    expected |= {"nginx"} if "webservers" in groups else set()
    expected |= {"haproxy"} if "loadbalancers" in groups else set()
    expected |= {"mysql"} if {"db_primary", "db_replica"} & set(groups) else set()
    assert kinds == expected, f"{name} collects {kinds}, expected {expected}"
    for _, receiver, settings in found:
        check_source(server, receiver.split("/")[0], settings)


@pytest.mark.parametrize("name", SERVERS)
def test_collector_sources_carry_a_category_per_host_group(name):
    server = get(name)
    with server.sudo():
        text = server.check_output("cat /etc/otelcol-sumo/conf.d/infra-*.yaml")
    categories = set(re.findall(r"key: _sourceCategory\n\s+value: (\S+)", text))
    prefix = site_setting("sumologic_source_category_prefix")
    assert categories and all(c.startswith(prefix + "/") for c in categories), categories
    groups = server.ansible.get_variables()["group_names"]
    if "webservers" in groups:
        assert f"{prefix}/webservers/nginx/access" in categories
    if "loadbalancers" in groups:
        assert f"{prefix}/loadbalancers/haproxy/access" in categories


@pytest.mark.parametrize("name", SERVERS)
def test_collector_secrets_are_root_only_and_out_of_the_config(name):
    server = get(name)
    with server.sudo():
        env_dir = server.file("/etc/otelcol-sumo/env")
        assert env_dir.user == "root" and env_dir.mode == 0o700
        for path in server.check_output("ls /etc/otelcol-sumo/env/").split():
            env = server.file(f"/etc/otelcol-sumo/env/{path}")
            assert env.user == "root" and env.mode == 0o600, path
        config = server.check_output("cat /etc/otelcol-sumo/conf.d/*.yaml")
    secret = server.ansible.get_variables().get("sumologic_mysql_password")
    assert secret and secret not in config


def test_logs_the_collector_reads_grow_with_traffic():
    """The access logs are really written, on the load balancer and on each web server."""
    def sizes():
        out = {}
        for name in names_of("loadbalancers", "webservers"):
            server = get(name)
            with server.sudo():
                for _, receiver, settings in sources(server):
                    # Error logs need not grow with good traffic: the access logs do.
                    if receiver.startswith("filelog/") and "error" not in receiver:
                        for pattern in settings["include"]:
                            out[(name, pattern)] = int(server.check_output(f"stat -c %s {pattern}"))
        return out

    before = sizes()
    assert {p for _, p in before} >= {"/var/log/haproxy.log", "/var/log/nginx/access.json"}, before
    load(20)
    deadline = time.time() + 10
    while time.time() < deadline and not all(v > before[k] for k, v in sizes().items()):
        time.sleep(1)
    after = sizes()
    grown = {k: after[k] - before[k] for k in before}
    assert all(v > 0 for v in grown.values()), grown

