"""lab/bench.py's copy of the lab inventory and what it reads from it, and lab/bench_report.py's
parsing of the tools' reports and its report."""

import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
import bench  # noqa: E402  pylint: disable=wrong-import-position
import bench_backup  # noqa: E402  pylint: disable=wrong-import-position
import bench_report  # noqa: E402  pylint: disable=wrong-import-position

REPORT = """Running 10s test @ https://www.foobar.com:443/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.50ms    3.67ms 139.03ms   96.54%
  Latency Distribution
     50%  920.00us
     75%    1.37ms
     90%    2.34ms
     99%   1.36s
  152262 requests in 10.01s, 105.57MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
  Non-2xx or 3xx responses: 12
Requests/sec:  15218.57
Transfer/sec:     10.55MB
"""


def test_wrk_report_gives_rate_latencies_in_ms_and_errors():
    figures = bench_report.parse_wrk(REPORT)
    assert figures == {"rps": 15218.57, "p50_ms": 0.92, "p99_ms": 1360.0,
                       "errors": "Socket errors: connect 0, read 3, write 0, timeout 0; Non-2xx or 3xx responses: 12",
                       "requests": 152262, "non_2xx": 12,
                       "socket_errors": {"connect": 0, "read": 3, "write": 0, "timeout": 0}}


def test_wrk_report_without_errors_counts_zero():
    clean = "\n".join(line for line in REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line)
    figures = bench_report.parse_wrk(clean)
    assert figures["non_2xx"] == 0 and figures["requests"] == 152262
    assert figures["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_wrk_report_without_latency_distribution_is_an_error():
    with pytest.raises(bench_report.BenchError, match="no figures"):
        bench_report.parse_wrk("Requests/sec:  10.0\n")


@pytest.fixture(scope="module")
def lab_topology():
    """What the bench reads from the real lab inventory (ansible-inventory, once)."""
    return bench.topology(bench.read_inventory())


def test_bench_inventory_is_the_lab_moved_to_its_own_subnet_and_key(tmp_path, monkeypatch, lab_topology):
    monkeypatch.setattr(bench, "STATE", tmp_path)
    inv = bench.write_inventory(lab_topology)
    hosts = (inv / "hosts.yml").read_text()
    assert "172.30.10." not in hosts and "172.30.30.10" in hosts
    assert "lab_publish: [" not in hosts
    allvars = (inv / "group_vars" / "all.yml").read_text()
    assert f"lab_ssh_dir: {bench.ROOT / '.lab' / 'bench' / 'ssh'}" in allvars
    assert "172.30.30.1/32" in allvars
    assert not (inv / "pki").exists()


RECAP = """PLAY RECAP *********************************************************************
lb-01                      : ok=180  changed=0    unreachable=0    failed=0    skipped=60   rescued=0    ignored=0

ROLES RECAP ********************************************************************
Tuesday 24 November 2026  21:02:11 +0000 (0:00:00.101)       0:01:08.310 ******
===============================================================================
common ----------------------------------------------------------------- 21.50s
firewall --------------------------------------------------------------- 12.07s
include_role ------------------------------------------------------------ 0.90s
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
total ------------------------------------------------------------------ 34.47s

TASKS RECAP ********************************************************************
===============================================================================
common : Install the packages ------------------------------------------- 3.10s
"""


def test_role_times_read_the_roles_recap_only():
    assert bench_report.role_times(RECAP) == {"common": 21.5, "firewall": 12.07, "include_role": 0.9}


def test_role_times_without_a_recap_is_an_error():
    with pytest.raises(bench_report.BenchError, match="ROLES RECAP"):
        bench_report.role_times("PLAY RECAP ***\n")


def test_tuning_variables_keep_their_types():
    assert bench.extra_vars({}) == []
    assert bench.extra_vars({"haproxy_backend_tls_session_reuse": False, "nginx_worker_processes": 1}) == [
        "-e", '{"haproxy_backend_tls_session_reuse": false, "nginx_worker_processes": 1}']


S_TIME_REUSE = """Collecting connection statistics for 10 seconds
rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr*r

82 connections in 0.21s; 390.48 connections/user sec, bytes read 21320
82 connections in 10 real seconds, 260 bytes read per connection
"""


def test_s_time_report_gives_rate_and_resumed_share():
    assert bench_report.parse_s_time(S_TIME_REUSE) == {"connections_per_s": 8.2, "connections": 82,
                                                "resumed_share": 0.988}


def test_s_time_without_figures_is_an_error():
    with pytest.raises(bench_report.BenchError, match="s_time printed no figures"):
        bench_report.parse_s_time("connect: Connection refused\nconnect:errno=111\n")


def test_tasks_run_are_the_ok_counts_of_the_servers():
    assert bench_report.tasks_run(RECAP + "localhost                  : ok=1    changed=0\n") == {"lb-01": 180}


def point(rps, p99=1.0):
    return {"rps": rps, "p50_ms": 0.5, "p99_ms": p99, "errors": ""}


def test_knee_is_where_more_connections_stop_adding_throughput():
    assert bench_report.knee({100: point(10000), 1000: point(10500), 5000: point(9000)}) == 100
    assert bench_report.knee({100: point(5000), 1000: point(9000), 5000: point(9200)}) == 1000
    assert bench_report.knee({100: point(5000), 1000: point(9000), 5000: point(12000)}) == 5000


def test_knee_of_a_curve_with_a_missing_point_is_unknown():
    assert bench_report.knee({100: point(10000), 1000: {"error": "wrk failed"}, 5000: point(9000)}) is None
    assert bench_report.knee({}) is None


def test_curve_report_puts_before_and_after_side_by_side_with_the_knee():
    points = {c: point(1000.0 * i, p99=10.0 * i) for i, c in enumerate(bench_report.CURVE_CONNECTIONS, 1)}
    failed = {**points, 5000: {"error": "wrk printed no figures"}}
    curve = {side: {mode: {"points": pts, "knee": bench_report.knee(pts)} for mode in bench_report.MODES}
             for side, pts in (("before", failed), ("after", points))}
    lines = bench_report.curve_report(curve)
    row = next(line for line in lines if line.split()[:2] == ["keep-alive", "1000"])
    assert row.split()[-4:] == ["2000", "20.00", "2000", "20.00"]
    failed_row = next(line for line in lines if line.split()[:2] == ["keep-alive", "5000"])
    assert "failed" in failed_row and "before: wrk printed no figures" in failed_row
    assert "knee: before at None connections, after at 5000" in "\n".join(lines)


def test_bench_client_is_on_the_rate_limit_allow_list(tmp_path, monkeypatch, lab_topology):
    monkeypatch.setattr(bench, "STATE", tmp_path)
    allvars = (bench.write_inventory(lab_topology) / "group_vars" / "all.yml").read_text()
    assert "haproxy_rate_limit_allow: [172.30.30.30]" in allvars
    hosts = (tmp_path / "inventory" / "hosts.yml").read_text()
    assert "ansible_host: 172.30.30.30" in hosts


def test_old_settings_of_the_curve_are_the_variables_the_roles_declare():
    declared = set()
    for role in ("haproxy", "nginx"):
        declared |= set(yaml.safe_load((bench.ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
                        ["argument_specs"]["main"]["options"])
    # nginx_max_clients is the fact the nginx role publishes, overridden on purpose (see OVERLOAD_BEFORE).
    assert set(bench.OVERLOAD_BEFORE) - {"nginx_max_clients"} <= declared


def test_lab_topology_is_read_from_the_inventory_and_the_site_group_vars(lab_topology):
    topo = dict(lab_topology)
    assert topo.pop("backup_vars")["ansible_host"] == "172.30.10.40"
    # What the lab inventory holds, read by Ansible itself (not by the bench's reader).
    from ansible.inventory.manager import InventoryManager  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    manager = InventoryManager(loader=DataLoader(), sources=[str(bench.LAB_INVENTORY)])
    group = {name: [h.name for h in manager.groups[name].get_hosts()] for name in manager.groups}
    servers = list(dict.fromkeys(h for g in ("loadbalancers", "webservers", "db_primary", "db_replica") for h in group[g]))
    assert topo == {"servers": servers, "lab_subnet": "172.30.10.0/24",
                    "site": "www.foobar.com", "site_address": "172.30.30.5", "lbs": group["loadbalancers"],
                    "lb": group["loadbalancers"][0], "web": group["webservers"][0],
                    "web_address": "172.30.30.11", "client": "client", "client_address": "172.30.30.30",
                    "db_primary": group["db_primary"][0], "db_hosts": group["db_primary"] + group["db_replica"],
                    "backup_host": group["backups"][0]}


SITE = {"lab_subnet": "10.20.0.0/24", "infra_site_name": "shop.example.org",
        "infra_required_groups": ["loadbalancers", "webservers", "db_primary", "db_replica"]}


def bigger_lab(**changes):
    """`ansible-inventory --list` of a bigger lab: two load balancers, three web servers, the
    databases in a parent group, on another subnet."""
    addresses = {"lb-02": "10.20.0.9", "lb-01": "10.20.0.10", "web-01": "10.20.0.11", "web-02": "10.20.0.12",
                 "web-03": "10.20.0.13", "client": "10.20.0.30", "outside": "192.0.2.7"}
    data = {
        "_meta": {"hostvars": {h: dict(SITE, ansible_host=a) for h, a in addresses.items()}},
        "all": {"children": ["ungrouped", "servers", "lab_support"]},
        "servers": {"children": ["loadbalancers", "webservers", "databases"]},
        "loadbalancers": {"hosts": ["lb-02", "lb-01"]},
        "webservers": {"hosts": ["web-01", "web-02", "web-03"]},
        "databases": {"children": ["db_primary", "db_replica"]},
        "db_primary": {"hosts": ["web-01"]},
        "db_replica": {"hosts": ["web-02", "web-03"]},
        "lab_support": {"hosts": ["client", "outside"]},
    }
    data.update(changes)
    return data


def test_bigger_lab_needs_no_edit():
    topo = bench.topology(bigger_lab())
    assert topo["servers"] == ["lb-02", "lb-01", "web-01", "web-02", "web-03"]
    assert (topo["lb"], topo["web"], topo["web_address"], topo["site"]) == (
        "lb-02", "web-01", "172.30.30.11", "shop.example.org")
    assert topo["client_address"] == "172.30.30.30"
    assert (topo["db_primary"], topo["db_hosts"], topo["backup_host"]) == ("web-01", ["web-01", "web-02", "web-03"], None)
    with_backups = bench.topology(bigger_lab(backups={"hosts": ["outside"]}))
    assert with_backups["backup_host"] == "outside" and with_backups["backup_vars"]["ansible_host"] == "192.0.2.7"


def test_child_groups_give_their_hosts_to_the_parent():
    groups = bench.inventory_groups(bigger_lab())
    assert groups["databases"] == ["web-01", "web-02", "web-03"]
    assert groups["all"][:2] == ["lb-02", "lb-01"] and "outside" in groups["all"]


@pytest.mark.parametrize("address, moved", [
    ("10.20.0.10", "172.30.30.10"), ("10.20.0.1", "172.30.30.1"), ("10.20.0.0", "172.30.30.0"),
    ("192.0.2.7", "192.0.2.7"), ("10.20.1.10", "10.20.1.10"), ("fd00::10", "fd00::10")])
def test_addresses_keep_their_offset_in_the_bench_subnet(address, moved):
    assert bench.move_address(address, "10.20.0.0/24") == moved


def test_every_lab_address_of_a_text_is_moved_and_nothing_else():
    text = "ansible_host: 10.20.0.12\nlab_subnet: 10.20.0.0/24\nadmin: [10.20.0.1/32, 110.20.0.1, 192.0.2.1]\n"
    assert bench.move_addresses(text, "10.20.0.0/24") == (
        "ansible_host: 172.30.30.12\nlab_subnet: 172.30.30.0/24\nadmin: [172.30.30.1/32, 110.20.0.1, 192.0.2.1]\n")


@pytest.mark.parametrize("data, message", [
    (bigger_lab(db_primary={"hosts": []}), "lab inventory: inventory group 'db_primary' has no hosts"),
    (bigger_lab(_meta={"hostvars": {h: hv for h, hv in bigger_lab()["_meta"]["hostvars"].items() if h != "client"}}),
     "no host 'client'"),
    (bigger_lab(_meta={"hostvars": {"lb-01": {"ansible_host": "10.20.0.10"}}}), "infra_required_groups"),
    (bigger_lab(_meta={"hostvars": {"lb-01": dict(SITE, lab_subnet="10.0.0.0/16")}}), "does not fit"),
])
def test_an_inventory_the_bench_cannot_use_is_refused(data, message):
    with pytest.raises(bench_report.BenchError, match=message):
        bench.topology(data)


def test_binlog_total_counts_the_files_from_the_first_on():
    sizes = {"mysql-bin.000009": 500, "mysql-bin.000010": 300, "mysql-bin.000011": 40}
    assert bench_report.binlog_total(sizes, "mysql-bin.000010") == 340
    assert bench_report.binlog_total(sizes, "mysql-bin.000012") == 0


def test_archive_lag_in_bytes_and_in_seconds_behind_the_primary():
    # The primary writes 100 bytes a second; the archive holds what it had 1.5 s earlier, then all.
    samples = [(0.0, 0, 0), (1.0, 100, 0), (2.0, 200, 50), (3.0, 300, 150), (4.0, 300, 300)]
    lag = bench_report.archive_lag(samples)
    assert lag == {"max_bytes": 150, "median_bytes": 100, "max_s": 1.5, "median_s": 1.0, "samples": 5}


def test_archive_lag_of_an_archive_that_keeps_up_is_zero():
    lag = bench_report.archive_lag([(0.0, 10, 10), (0.5, 60, 60), (1.0, 90, 95)])
    assert (lag["max_bytes"], lag["max_s"]) == (0, 0.0)


def test_archive_lag_without_samples_is_an_error():
    with pytest.raises(bench_report.BenchError, match="never sampled"):
        bench_report.archive_lag([])


BACKUP = {"rows": 976128, "data_bytes": 1181116006, "datadir_bytes": 1610612736,
          "load": {"seconds": 80.0, "binlog_bytes": 1073741824},
          "archive_lag": {"max_bytes": 3145728, "median_bytes": 1048576, "max_s": 0.8, "median_s": 0.3,
                          "samples": 150, "catch_up_s": 0.5},
          "backup": {"seconds": 42.0, "bytes": 600 * 1048576, "host": "web-01", "script_s": 40},
          "backup_playbook": {"seconds": 45.5},
          "restore": {"seconds": 200.0, "slowest": {"Reseed the replicas": 90.0, "Prepare the backup": 30.5},
                      "roles": {"mysql": 61.4, "backup": 39.1, "ansible.builtin.debug": 0.04}},
          "dump": {"seconds": 60.0, "bytes": 500 * 1048576}, "reload": {"seconds": 240.0}}


def test_backup_report_puts_physical_and_logical_side_by_side():
    lines = bench_report.backup_report(BACKUP)
    text = "\n".join(lines)
    assert "1126 MB of generated rows (976128 rows; data directory 1536 MB)" in text
    assert re.search(r"physical backup: .* +42\.0 +600$", text, re.M)
    assert re.search(r"logical: mariadb-dump .* +60\.0 +500$", text, re.M)
    assert re.search(r"logical: reload .* +240\.0$", text, re.M)
    assert "the restore by role (backup: the primary restored; mysql: the replicas reseeded): mysql 61.4 s; backup 39.1 s\n" in text
    assert "the restore's slowest tasks: Reseed the replicas 90.0 s; Prepare the backup 30.5 s" in text
    assert ("during the load (80 s, 12.8 MB/s of binary log): lag median 1.0 MB / 0.3 s, max 3.0 MB / 0.8 s "
            "(150 samples); caught up 0.5 s after the load ended") in text


def test_slowest_tasks_are_read_from_the_tasks_recap():
    out = ("TASK [x] ***\nTASKS RECAP ****\nWednesday 02 December 2026  17:10:36 +0000 (0:00:00.046)  0:00:13.377\n"
           "=======\nbackup : Prepare the backup (crash recovery) ------- 30.52s\n"
           "Decrypt, checking every chunk ------------------- 12.00s\nbackup : Unpack the backup ----- 3.10s\n")
    assert bench_backup.slowest_tasks(out, 2) == {"Prepare the backup (crash recovery)": 30.52,
                                                  "Decrypt, checking every chunk": 12.0}


def test_backup_metrics_are_read_once_and_a_missing_one_is_named():
    calls = []

    def exec_on(host, command):
        calls.append((host, command))
        return 0.1, ("# HELP infra_db_backup_last_run_success Whether...\ninfra_db_backup_last_run_success 1\n"
                     "infra_db_backup_last_run_duration_seconds 9\ninfra_db_backup_last_success_size_bytes 585848489\n")
    lab = bench_backup.Lab(exec_on, "web-01", "monitor", "/var/backups/infra-db")
    assert bench_backup.metrics(lab, "web-01", "infra_db_backup_last_run_duration_seconds",
                                "infra_db_backup_last_success_size_bytes") == {
        "infra_db_backup_last_run_duration_seconds": 9.0, "infra_db_backup_last_success_size_bytes": 585848489.0}
    assert calls == [("web-01", f"cat {bench_backup.PROM}")]
    with pytest.raises(bench_report.BenchError, match="has no infra_db_backup_nothing"):
        bench_backup.metrics(lab, "web-01", "infra_db_backup_nothing")


def test_backup_lab_sql_quotes_the_query_for_the_shell():
    seen = []
    lab = bench_backup.Lab(lambda host, command: (seen.append((host, command)), (0.1, "a\tb\n"))[1],
                           "web-01", "monitor", "/var/backups/infra-db")
    assert lab.sql("SELECT 'x'") == [["a", "b"]]
    assert seen == [("web-01", "mariadb -N -B -e 'SELECT '\"'\"'x'\"'\"''")]


def test_the_seed_site_keeps_the_first_load_balancer_the_primary_and_one_replica():
    hosts = yaml.safe_load((bench.LAB_INVENTORY / "hosts.yml").read_text())
    cut, dropped = bench.seed_site(hosts)
    groups = bench._groups(cut["all"])  # pylint: disable=protected-access
    members = {name: sorted(node.get("hosts") or {}) for name, node in groups.items()}
    assert members["loadbalancers"] == ["lb-01"]
    assert members["webservers"] == ["web-01", "web-02"]
    assert sorted(dropped) == ["lb-02", "web-03"]
    assert members["db_primary"] == ["web-01"] and members["db_replica"] == ["web-02"]
    assert "lb-02" in str(hosts), "the lab inventory itself is left alone"
    # The site's names lead to the one load balancer's own address (its network aliases): no
    # floating address, which labctl would refuse at a host's address.
    assert "lab_site" not in cut["all"].get("vars", {})
    assert groups["loadbalancers"]["hosts"]["lb-01"]["lab_aliases"] == hosts["all"]["vars"]["lab_site"]["names"]
    assert members["lab_support"] == sorted(bench._groups(hosts["all"])["lab_support"]["hosts"])  # pylint: disable=protected-access


def test_the_seed_site_of_a_seed_inventory_is_refused():
    hosts = {"all": {"children": {"loadbalancers": {"hosts": {"lb-01": {"ansible_host": "10.0.0.10"}}},
                                  "webservers": {"hosts": {"web-01": None}}, "db_primary": {"hosts": {"web-01": None}}}}}
    with pytest.raises(bench_report.BenchError, match="nothing to compare"):
        bench.seed_site(hosts)


def test_the_report_shows_what_each_added_server_costs():
    figures = {"playbook": {"full_converge_s": 300.0, "no_change_run_s": 120.0, "certs_run_s": 10.0, "apt_floor_s": 30.0,
                            "changed": {"no_change": {}}, "ratios": {},
                            "by_size": {"seed": {"servers": 3, "full_converge_s": 240.0, "no_change_run_s": 100.0},
                                        "lab": {"servers": 5, "full_converge_s": 300.0, "no_change_run_s": 120.0},
                                        "added": ["lb-02", "web-03"],
                                        "per_added_server_s": {"full": 30.0, "no_change": 10.0}}},
               "serving": {"runs": {}, "tunings": []}}
    text = bench_report.report(figures)
    assert "each added server (lb-02, web-03)" in text and "30.0" in text and "10.0" in text


def test_the_floating_address_holder_is_the_one_load_balancer_that_has_it(monkeypatch):
    topo = {"site_address": "172.30.30.5", "lbs": ["lb-01", "lb-02"]}
    held = {"lb-01": "0\n", "lb-02": "1\n"}
    monkeypatch.setattr(bench, "docker_exec", lambda host, command, timeout=0: (0.1, held[host]))
    assert bench.address_holder(topo) == "lb-02"
    held["lb-01"] = "1\n"
    with pytest.raises(bench_report.BenchError, match=r"held by \['lb-01', 'lb-02'\]"):
        bench.address_holder(topo)
    assert bench.address_holder({"site_address": None, "lbs": ["lb-01"]}) is None


def test_the_report_names_the_floating_address_holder():
    figures = {"playbook": {"full_converge_s": 1.0, "no_change_run_s": 1.0, "certs_run_s": 1.0, "apt_floor_s": 1.0,
                            "changed": {"no_change": {}}, "ratios": {}},
               "serving": {"runs": {}, "tunings": [], "site_address": "172.30.30.5", "site_address_holder": "lb-01"}}
    assert "floating address 172.30.30.5, held by lb-01" in bench_report.report(figures)


def test_the_floor_as_converged_installs_from_the_converged_sources_then_takes_the_security_updates(monkeypatch):
    files = {"web-01": {path: f"text of {path}\n" for path in bench.APT_FILES}}
    commands = []

    def docker_exec(host, command, timeout=0):
        commands.append(command)
        if command == "apt-mark showmanual":
            return 0.1, "ca-certificates\n"
        if command.startswith("unattended-upgrade"):
            return 3.0, "Packages that will be upgraded: libssl3 openssl\nAll upgrades installed\n"
        return 1.0, ""

    monkeypatch.setattr(bench, "docker_exec", docker_exec)
    monkeypatch.setattr(bench, "fresh_lab", lambda inv: None)
    packages = {"web-01": {"ca-certificates", "nginx", "age"}}
    total, per_host = bench.floor_as_converged("inv", ["web-01"], packages, files)
    assert per_host == {"web-01": {"seconds": {"lists": 1.0, "install": 1.0, "security updates": 3.0}, "upgraded": 2}}
    assert total >= 0
    # The sources before the lists are read, the daily run's selection after the install (the
    # unattended-upgrades package would find a file of its own there), then the updates.
    steps = [next((path for path in bench.APT_FILES if command.endswith(f"> {path}")), command.split()[0])
             for command in commands]
    assert steps == ["apt-mark", *bench.APT_FILES[:2], "apt-get", "export", bench.APT_FILES[2], "unattended-upgrade"]
    assert "age nginx" in commands[4] and "ca-certificates" not in commands[4]
    written = [command for command in commands if command.startswith("echo ")]
    assert all(re.fullmatch(r"echo [A-Za-z0-9+/=]+ \| base64 -d > \S+", command) for command in written)


def test_the_report_shows_the_floor_as_converged_and_the_lower_bound():
    figures = {"playbook": {"full_converge_s": 200.0, "no_change_run_s": 12.0, "certs_run_s": 1.5, "apt_floor_s": 40.0,
                            "apt_floor_as_converged_s": 80.0,
                            "apt_floor_as_converged_per_host": {
                                "lb-01": {"seconds": {"lists": 2.0, "install": 50.0, "security updates": 20.0},
                                          "upgraded": 17},
                                "web-01": {"seconds": {"lists": 2.0, "install": 60.0, "security updates": 18.0},
                                           "upgraded": 6}},
                            "module_call_one_server_s": 0.2, "full_changed_most": 60, "full_lower_bound_s": 92.0,
                            "changed": {"no_change": {}}, "ratios": {"lower bound / floor": 2.3}},
               "serving": {"runs": {}, "tunings": []}}
    text = bench_report.report(figures)
    assert "floor as converged                    80.0   (busiest, web-01: lists 2.0, install 60.0, " \
        "security updates 18.0; 6 packages updated)" in text
    assert "lower bound of a full converge        92.0   (floor as converged + 60 changed tasks x 0.2 s" in text
    assert "lower bound / floor                    2.3" in text
