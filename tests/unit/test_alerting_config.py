"""The prometheus role's monitoring configuration, rendered by Ansible from a small inventory and
checked by the tools of the packages that read it: promtool (config and rules, and the rules'
behaviour with `promtool test rules`: synthetic series in, the alerts a person would receive
out), amtool and the blackbox exporter's own check.

The tools come from Debian's packages, unpacked without installing (`make prometheus-tools`
puts them in .cache/prometheus-tools); a missing tool skips its tests, saying how to get it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "ansible-playbook")
if not Path(ANSIBLE_PLAYBOOK).exists():
    ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or "ansible-playbook"
TOOLS = ROOT / ".cache" / "prometheus-tools" / "usr" / "bin"
ROLE = ROOT / "roles" / "prometheus"

RENDER = """
- name: Render the prometheus role's files
  hosts: monitoring
  connection: local
  gather_facts: false
  tasks:
    - name: The role's checks (and its variables)
      ansible.builtin.include_role:
        name: prometheus
        tasks_from: validate
        public: true
    - name: Render
      ansible.builtin.template:
        src: "{{ role_dir }}/templates/{{ item }}.j2"
        dest: "{{ out_dir }}/{{ item }}"
        mode: "0644"
      loop: [prometheus.yml, blackbox.yml, alertmanager.yml, access.nft, rules/site.yml, rules/databases.yml, rules/hosts.yml]
"""

INVENTORY = {
    "all": {
        "vars": {"infra_admin_networks": ["192.0.2.0/24"], "ansible_python_interpreter": sys.executable},
        "children": {
            "servers": {"children": {
                "loadbalancers": {"hosts": {"lb-01": {"ansible_host": "10.0.0.10"}, "lb-02": {"ansible_host": "10.0.0.9"}},
                                  "vars": {"keepalived_vip": "10.0.0.5/24"}},
                "webservers": {"hosts": {"web-01": {"ansible_host": "10.0.0.11"},
                                         "web-02": {"ansible_host": "10.0.0.12"},
                                         "web-03": {"ansible_host": "10.0.0.13"}}},
                "db_primary": {"hosts": {"web-01": {}}},
                "db_replica": {"hosts": {"web-02": {}, "web-03": {}}},
            }},
            "monitoring": {"hosts": {"monitor": {"ansible_host": "10.0.0.40"}}},
        },
    }
}


def tool(name):
    path = shutil.which(name) or (str(TOOLS / name) if (TOOLS / name).exists() else None)
    if not path:
        pytest.skip(f"{name} not found: `make prometheus-tools` unpacks Debian's into .cache/prometheus-tools")
    return path


def render(tmp_path, extra_vars=None):
    """Run the role's checks and render its files; (return code, output, directory)."""
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(INVENTORY))
    play = tmp_path / "render.yml"
    play.write_text(RENDER)
    out = tmp_path / "out"
    (out / "rules").mkdir(parents=True)
    extra = {"role_dir": str(ROLE), "out_dir": str(out), **(extra_vars or {})}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inv), str(play), "-e", json.dumps(extra)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr, out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    rc, out, directory = render(tmp_path_factory.mktemp("render"), {
        "prometheus_alertmanager_webhook_url": "https://hooks.example.com/services/T0/B0/secret-token",
        "prometheus_alertmanager_email_to": "oncall@example.com",
        "prometheus_alertmanager_smtp_smarthost": "smtp.example.com:587",
        "prometheus_alertmanager_smtp_username": "alertmanager@example.com",
        "prometheus_alertmanager_smtp_password": "smtp-secret",
        "prometheus_alertmanager_webhook_severities": ["critical"],
        "prometheus_blackbox_site_ca_file": "/etc/ssl/lab/site-roots.pem",
    })
    assert rc == 0, out
    return directory


# --- Each file as the program that reads it checks it -------------------------------------

@pytest.mark.parametrize("name", ["site", "databases", "hosts"])
def test_rule_files_pass_promtool(rendered, name):
    proc = subprocess.run([tool("promtool"), "check", "rules", str(rendered / "rules" / f"{name}.yml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_config_with_its_rules_passes_promtool(rendered):
    config = (rendered / "prometheus.yml").read_text().replace("/etc/prometheus/rules/", f"{rendered}/rules/")
    (rendered / "prometheus-local.yml").write_text(config)
    proc = subprocess.run([tool("promtool"), "check", "config", str(rendered / "prometheus-local.yml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 rule files found" in proc.stdout + proc.stderr


def test_alertmanager_config_passes_amtool(rendered):
    proc = subprocess.run([tool("amtool"), "check-config", str(rendered / "alertmanager.yml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_blackbox_config_passes_the_exporters_check(rendered):
    proc = subprocess.run([tool("prometheus-blackbox-exporter"), "--config.check",
                           f"--config.file={rendered / 'blackbox.yml'}"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- What the files say -------------------------------------------------------------------

def test_every_load_balancer_and_web_server_is_probed(rendered):
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    site = [(t["labels"]["instance"], target) for t in jobs["blackbox_site"]["static_configs"] for target in t["targets"]]
    # Through each load balancer, and at their floating address (what visitors reach).
    assert site == [("lb-01", "https://10.0.0.10/"), ("lb-02", "https://10.0.0.9/"),
                    ("floating-address", "https://10.0.0.5/")]
    internal = {t["labels"]["instance"]: (t["targets"], t["labels"]["__param_module"])
                for t in jobs["blackbox_internal"]["static_configs"]}
    assert internal == {f"web-0{i}": ([f"https://10.0.0.1{i}:443/healthz"], f"internal_https_web-0{i}") for i in (1, 2, 3)}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["10.0.0.40:9093"]
    blackbox = yaml.safe_load((rendered / "blackbox.yml").read_text())["modules"]
    assert blackbox["site_https"]["http"]["tls_config"] == {"server_name": "www.foobar.com", "min_version": "TLS12",
                                                           "ca_file": "/etc/ssl/lab/site-roots.pem"}
    assert blackbox["site_https"]["http"]["headers"] == {"Host": "www.foobar.com"}
    for web in ("web-01", "web-02", "web-03"):
        assert blackbox[f"internal_https_{web}"]["http"]["tls_config"] == {"server_name": web,
                                                                        "ca_file": "/etc/ssl/infra/ca.pem"}


def test_alertmanager_routes_each_severity_to_its_channels_and_sends_resolved(rendered):
    config = yaml.safe_load((rendered / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    routes = {r["matchers"][0]: r["receiver"] for r in config["route"]["routes"]}
    assert routes == {'severity="critical"': "critical", 'severity="warning"': "warning"}
    # The webhook takes critical alerts only (prometheus_alertmanager_webhook_severities); e-mail both.
    assert "webhook_configs" in receivers["critical"] and "webhook_configs" not in receivers["warning"]
    assert all(r["email_configs"][0]["send_resolved"] for r in (receivers["critical"], receivers["warning"]))
    assert receivers["critical"]["webhook_configs"][0]["send_resolved"] is True
    assert config["route"]["group_by"] == ["alertname", "instance"]
    # The SMTP password is in a file of its own, never in the configuration.
    assert "smtp-secret" not in (rendered / "alertmanager.yml").read_text()
    assert config["global"]["smtp_auth_password_file"] == "/etc/prometheus/alertmanager-smtp-password"
    assert config["global"]["smtp_require_tls"] is True


def test_only_admins_and_monitoring_hosts_reach_the_pages(rendered):
    nft = (rendered / "access.nft").read_text()
    assert re.search(r"elements = \{ 192\.0\.2\.0/24, 10\.0\.0\.40 \}", nft), nft
    assert "tcp dport { 9090, 9093, 9094 } drop" in nft


# --- The rules' behaviour: series in, alerts out (promtool test rules) ----------------------

def annotations(rule, labels, value):
    """The rule's annotations as Prometheus expands them, for the simple forms the rules use."""
    def expand(text):
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
        for form, fmt in (('{{ $value | printf "%.1f" }}', "{:.1f}"), ('{{ $value | printf "%.2f" }}', "{:.2f}"),
                          ("{{ $value | humanizePercentage }}", "{:.4g}%"), ("{{ $value }}", "{:g}")):
            if form in text:
                text = text.replace(form, fmt.format(value * 100 if "Percentage" in form else value))
        assert "{{" not in text, f"expand() does not know {text!r}"
        return text
    return {key: expand(text) for key, text in rule["annotations"].items()}


def rules_by_name(rendered):
    found = {}
    for path in (rendered / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.update({rule["alert"]: rule for rule in group["rules"]})
    return found


def promtool_test(rendered, tmp_path, series, checks, interval="15s"):
    """checks: [(eval_time, alertname, [(labels, value)])]; fails with promtool's report."""
    rules = rules_by_name(rendered)
    cases = []
    for eval_time, name, alerts in checks:
        exp = []
        for labels, value in alerts:
            full = {**labels, **rules[name]["labels"]}
            exp.append({"exp_labels": full, "exp_annotations": annotations(rules[name], full, value)})
        cases.append({"eval_time": eval_time, "alertname": name, "exp_alerts": exp})
    spec = {"rule_files": [str(p) for p in sorted((rendered / "rules").glob("*.yml"))], "evaluation_interval": interval,
            "tests": [{"interval": interval, "input_series": [{"series": s, "values": v} for s, v in series],
                       "alert_rule_test": cases}]}
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = subprocess.run([tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_replication_stopped_alerts_naming_the_replica_and_clears(rendered, tmp_path):
    # STOP SLAVE on web-02 at 1m stops both threads (one alert, not two series clashing), START
    # SLAVE at 6m; web-03 replicates without a stop.
    labels = 'instance="web-02",job="mysqld",connection_name="",master_host="10.0.0.11"'
    promtool_test(rendered, tmp_path, [
        (f"mysql_slave_status_slave_sql_running{{{labels}}}", "1x3 0x20 1x20"),
        (f"mysql_slave_status_slave_io_running{{{labels}}}", "1x3 0x20 1x20"),
        ('mysql_slave_status_slave_sql_running{instance="web-03",job="mysqld"}', "1x50"),
        ('mysql_slave_status_slave_io_running{instance="web-03",job="mysqld"}', "1x50"),
        ('mysql_up{instance="web-02",job="mysqld"}', "1x50"),
        ('mysql_up{instance="web-03",job="mysqld"}', "1x50"),
    ], [
        ("2m", "ReplicationStopped", []),  # stopped for less than `for`
        ("4m", "ReplicationStopped", [({"instance": "web-02", "job": "mysqld", "master_host": "10.0.0.11"}, 0)]),
        ("8m", "ReplicationStopped", []),
    ])


def test_a_replica_that_forgot_its_source_alerts_too(rendered, tmp_path):
    """RESET SLAVE ALL leaves no slave status at all: an inventory replica without it alerts."""
    promtool_test(rendered, tmp_path, [
        ('mysql_up{instance="web-02",job="mysqld"}', "1x20"),
        ('mysql_up{instance="web-01",job="mysqld"}', "1x20"),
        ('mysql_slave_status_slave_sql_running{instance="web-03",job="mysqld"}', "1x20"),
        ('mysql_slave_status_slave_io_running{instance="web-03",job="mysqld"}', "1x20"),
        ('mysql_up{instance="web-03",job="mysqld"}', "1x20"),
    ], [("4m", "ReplicationStopped", [({"instance": "web-02", "job": "mysqld"}, 1)])])


def test_semi_sync_fallback_and_writable_count(rendered, tmp_path):
    promtool_test(rendered, tmp_path, [
        ('mysql_global_status_rpl_semi_sync_master_status{instance="web-01",job="mysqld"}', "1x3 0x20"),
        ('mysql_global_variables_rpl_semi_sync_master_enabled{instance="web-01",job="mysqld"}', "1x30"),
        ('mysql_global_status_rpl_semi_sync_master_status{instance="web-02",job="mysqld"}', "0x30"),
        ('mysql_global_variables_rpl_semi_sync_master_enabled{instance="web-02",job="mysqld"}', "0x30"),
        ('mysql_global_variables_read_only{instance="web-01",job="mysqld"}', "0x30"),
        ('mysql_global_variables_read_only{instance="web-02",job="mysqld"}', "1x3 0x20"),
    ], [
        ("5m", "SemiSyncFellBack", [({"instance": "web-01", "job": "mysqld"}, 0)]),
        ("30s", "SeveralWritableDatabases", []),
    ])
    rules = rules_by_name(rendered)
    assert "range query" in rules["SeveralWritableDatabases"]["annotations"]["summary"]


def test_several_writable_and_none_writable(rendered, tmp_path):
    spec_series = [
        ('mysql_global_variables_read_only{instance="web-01",job="mysqld"}', "0x30"),
        ('mysql_global_variables_read_only{instance="web-02",job="mysqld"}', "1x3 0x20"),
    ]
    path = tmp_path / "t.yml"
    rules = sorted(str(p) for p in (rendered / "rules").glob("*.yml"))
    sev = rules_by_name(rendered)["SeveralWritableDatabases"]
    path.write_text(yaml.safe_dump({"rule_files": rules, "evaluation_interval": "15s", "tests": [
        {"interval": "15s", "input_series": [{"series": s, "values": v} for s, v in spec_series],
         "alert_rule_test": [{"eval_time": "5m", "alertname": "SeveralWritableDatabases", "exp_alerts": [
             {"exp_labels": {"severity": "critical"},
              "exp_annotations": {**sev["annotations"], "summary": "2 database servers accept writes: web-01 web-02"}}]}]},
        {"interval": "15s", "input_series": [
            {"series": 'mysql_global_variables_read_only{instance="web-01",job="mysqld"}', "values": "0x3 1x20"}],
         "alert_rule_test": [{"eval_time": "5m", "alertname": "NoWritableDatabase", "exp_alerts": [
             {"exp_labels": {"severity": "critical"},
              "exp_annotations": rules_by_name(rendered)["NoWritableDatabase"]["annotations"]}]}]},
    ]}, sort_keys=False))
    proc = subprocess.run([tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_web_server_out_of_pool_and_too_few_healthy(rendered, tmp_path):
    """Three web servers, one spare: one out alerts on its own, two out is critical."""
    def status(server, up):
        return (f'haproxy_server_status{{instance="lb-01",job="haproxy",proxy="web",server="{server}",state="UP"}}', up)
    promtool_test(rendered, tmp_path, [
        status("web-01", "1x60"), status("web-02", "1x3 0x60"), status("web-03", "1x20 0x60"),
        ('haproxy_server_status{instance="lb-01",job="haproxy",proxy="web",server="web-02",state="DOWN"}', "0x3 1x60"),
    ], [
        ("4m", "WebServerOutOfPool", [({"instance": "lb-01", "job": "haproxy", "proxy": "web", "server": "web-02",
                                        "state": "UP"}, 0)]),
        ("4m", "TooFewHealthyWebServers", []),
        ("10m", "TooFewHealthyWebServers", [({"instance": "lb-01"}, 1)]),
    ])


def test_site_probe_failures_alert_with_their_reason(rendered, tmp_path):
    """An expired or untrusted certificate fails the handshake: no status, no certificate
    metrics, yet an alert. A 503 is another alert, with its status."""
    promtool_test(rendered, tmp_path, [
        ('probe_success{instance="lb-01",job="blackbox_site"}', "1x3 0x30"),
        ('probe_http_status_code{instance="lb-01",job="blackbox_site"}', "200x3 0x30"),
        ('probe_success{instance="lb-02",job="blackbox_site"}', "0x30"),
        ('probe_http_status_code{instance="lb-02",job="blackbox_site"}', "503x30"),
    ], [
        ("4m", "SiteHTTPSFailed", [({"instance": "lb-01", "job": "blackbox_site"}, 0)]),
        ("4m", "SiteNotAnswering2xx", [({"instance": "lb-02", "job": "blackbox_site"}, 503)]),
    ])


def test_certificate_expiry_within_the_threshold_alerts(rendered, tmp_path):
    day = 86400
    promtool_test(rendered, tmp_path, [
        # promtool's clock starts at 0: expiries 20 and 30 days from then.
        ('probe_ssl_earliest_cert_expiry{instance="lb-01",job="blackbox_site"}', f"{20 * day}x100"),
        ('probe_ssl_earliest_cert_expiry{instance="web-01",job="blackbox_internal"}', f"{30 * day}x100"),
    ], [("20m", "CertificateExpiringSoon", [({"instance": "lb-01", "job": "blackbox_site"}, 20 - 1200 / day)])],
        interval="1m")


def test_traffic_collapse_after_a_busy_hour(rendered, tmp_path):
    # 10 requests/s for 70 minutes, then nothing new.
    promtool_test(rendered, tmp_path, [
        ('haproxy_frontend_http_requests_total{instance="lb-01",job="haproxy",proxy="https-in"}',
         "0+600x70 42000x30"),
    ], [
        ("65m", "SiteTrafficCollapsed", []),
        ("80m", "SiteTrafficCollapsed", [({"instance": "lb-01"}, 0)]),
    ], interval="1m")


def test_5xx_ratio(rendered, tmp_path):
    base = 'haproxy_frontend_http_responses_total{{instance="lb-01",job="haproxy",proxy="https-in",code="{}"}}'
    promtool_test(rendered, tmp_path, [
        (base.format("2xx"), "0+900x20"), (base.format("5xx"), "0+100x20"),
    ], [("15m", "Site5xxRatioHigh", [({"instance": "lb-01"}, 0.1)])], interval="1m")


def test_security_updates_pending_alert_only_after_two_days(rendered, tmp_path):
    series = 'apt_upgrades_pending{instance="web-01",job="node",origin="Debian:bookworm-security/stable-security",arch="amd64"}'
    promtool_test(rendered, tmp_path, [
        (series, "3x3000"),
        ('apt_upgrades_pending{instance="web-02",job="node",origin="Debian:bookworm-updates/stable-updates",arch="amd64"}',
         "5x3000"),
    ], [
        ("47h", "SecurityUpdatesPending", []),
        ("49h", "SecurityUpdatesPending", [({"instance": "web-01"}, 3)]),
    ], interval="1m")


def test_a_failed_or_old_backup_and_a_stopped_archive_alert(rendered, tmp_path):
    """The backup role's metrics, a sample a minute: a run failed at 2m, a good one at 11m; the
    newest good backup 25 h old at the start, so older than 26 h after an hour; the archive
    following no primary from 2m."""
    promtool_test(rendered, tmp_path, [
        ('infra_db_backup_last_run_success{instance="web-01",job="node"}', "1x1 0x8 1x80"),
        ('infra_db_backup_last_success_timestamp_seconds{instance="web-01",job="node"}', "-90000x90"),
        ('infra_binlog_archive_up{instance="monitor",job="node",primary="web-01"}', "1x1 0x40"),
    ], [
        ("1m", "DatabaseBackupFailed", []),
        ("6m", "DatabaseBackupFailed", [({"instance": "web-01", "job": "node"}, 0)]),
        ("13m", "DatabaseBackupFailed", []),
        ("50m", "DatabaseBackupTooOld", []),
        ("70m", "DatabaseBackupTooOld", [({"instance": "web-01", "job": "node"}, 94200)]),
        ("6m", "BinlogArchiveDown", [({"instance": "monitor", "job": "node", "primary": "web-01"}, 0)]),
    ], interval="1m")


def test_disk_predicted_full(rendered, tmp_path):
    fs = '{instance="web-01",job="node",device="/dev/sda1",fstype="ext4",mountpoint="/"}'
    promtool_test(rendered, tmp_path, [
        # 10 GB free, losing 1 GB an hour: full in 10 hours.
        (f"node_filesystem_avail_bytes{fs}", "10000000000-16666666x600"),
        (f"node_filesystem_readonly{fs}", "0x600"),
    ], [("7h", "DiskFullSoon", [({"instance": "web-01", "job": "node", "device": "/dev/sda1", "fstype": "ext4",
                                  "mountpoint": "/"}, None)])], interval="1m")


# --- Bad input stops the run, naming the variable --------------------------------------------

@pytest.mark.parametrize("extra, named", [
    ({"prometheus_alert_5xx_ratio": 2}, "prometheus_alert_5xx_ratio"),
    ({"prometheus_alert_for": "two minutes"}, "prometheus_alert_for"),
    ({"prometheus_blackbox_listen": "0.0.0.0:9115"}, "prometheus_blackbox_listen"),
    ({"prometheus_listen": "0.0.0.0:9090"}, "prometheus_listen"),
    ({"prometheus_blackbox_timeout": "20s"}, "prometheus_blackbox_timeout"),
    ({"prometheus_alert_webservers_spare": 3}, "prometheus_alert_webservers_spare"),
    ({"prometheus_alertmanager_email_to": "oncall@example.com"}, "prometheus_alertmanager_smtp_smarthost"),
    ({"prometheus_alertmanager_email_to": "oncall@example.com", "prometheus_alertmanager_smtp_smarthost": "smtp:587",
      "prometheus_alertmanager_smtp_username": "am"}, "prometheus_alertmanager_smtp_password"),
    ({"prometheus_alertmanager_webhook_url": "hooks.example.com/x"}, "prometheus_alertmanager_webhook_url"),
    ({"prometheus_alertmanager_webhook_severities": ["page"]}, "prometheus_alertmanager_webhook_severities"),
    ({"prometheus_access_allow": []}, "prometheus_access_allow"),
])
def test_bad_input_fails_naming_the_variable(tmp_path, extra, named):
    rc, out, _ = render(tmp_path, extra)
    assert rc != 0, out
    assert named in out, out[-3000:]
