"""lab/bench.py's parsing of wrk reports and its copy of the lab inventory."""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
import bench  # noqa: E402  pylint: disable=wrong-import-position

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
    figures = bench.parse_wrk(REPORT)
    assert figures == {"rps": 15218.57, "p50_ms": 0.92, "p99_ms": 1360.0,
                       "errors": "Socket errors: connect 0, read 3, write 0, timeout 0; Non-2xx or 3xx responses: 12",
                       "requests": 152262, "non_2xx": 12,
                       "socket_errors": {"connect": 0, "read": 3, "write": 0, "timeout": 0}}


def test_wrk_report_without_errors_counts_zero():
    clean = "\n".join(line for line in REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line)
    figures = bench.parse_wrk(clean)
    assert figures["non_2xx"] == 0 and figures["requests"] == 152262
    assert figures["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}


def test_wrk_report_without_latency_distribution_is_an_error():
    with pytest.raises(bench.BenchError, match="no figures"):
        bench.parse_wrk("Requests/sec:  10.0\n")


def test_bench_inventory_is_the_lab_moved_to_its_own_subnet_and_key(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "STATE", tmp_path)
    inv = bench.write_inventory()
    hosts = (inv / "hosts.yml").read_text()
    assert "172.30.10." not in hosts and f"{bench.SUBNET}.10" in hosts
    assert "lab_publish: [" not in hosts
    allvars = (inv / "group_vars" / "all.yml").read_text()
    assert f"lab_ssh_dir: {bench.ROOT / '.lab' / 'bench' / 'ssh'}" in allvars
    assert f"{bench.SUBNET}.1/32" in allvars
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
    assert bench.role_times(RECAP) == {"common": 21.5, "firewall": 12.07, "include_role": 0.9}


def test_role_times_without_a_recap_is_an_error():
    with pytest.raises(bench.BenchError, match="ROLES RECAP"):
        bench.role_times("PLAY RECAP ***\n")


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
    assert bench.parse_s_time(S_TIME_REUSE) == {"connections_per_s": 8.2, "connections": 82,
                                                "resumed_share": 0.988}


def test_s_time_without_figures_is_an_error():
    with pytest.raises(bench.BenchError, match="s_time printed no figures"):
        bench.parse_s_time("connect: Connection refused\nconnect:errno=111\n")


def test_tasks_run_are_the_ok_counts_of_the_servers():
    assert bench.tasks_run(RECAP + "localhost                  : ok=1    changed=0\n") == {"lb-01": 180}


def point(rps, p99=1.0):
    return {"rps": rps, "p50_ms": 0.5, "p99_ms": p99, "errors": ""}


def test_knee_is_where_more_connections_stop_adding_throughput():
    assert bench.knee({100: point(10000), 1000: point(10500), 5000: point(9000)}) == 100
    assert bench.knee({100: point(5000), 1000: point(9000), 5000: point(9200)}) == 1000
    assert bench.knee({100: point(5000), 1000: point(9000), 5000: point(12000)}) == 5000


def test_knee_of_a_curve_with_a_missing_point_is_unknown():
    assert bench.knee({100: point(10000), 1000: {"error": "wrk failed"}, 5000: point(9000)}) is None
    assert bench.knee({}) is None


def test_curve_report_puts_before_and_after_side_by_side_with_the_knee():
    points = {c: point(1000.0 * i, p99=10.0 * i) for i, c in enumerate(bench.CURVE_CONNECTIONS, 1)}
    failed = {**points, 5000: {"error": "wrk printed no figures"}}
    curve = {side: {mode: {"points": pts, "knee": bench.knee(pts)} for mode in bench.MODES}
             for side, pts in (("before", failed), ("after", points))}
    lines = bench.curve_report(curve)
    row = next(line for line in lines if line.split()[:2] == ["keep-alive", "1000"])
    assert row.split()[-4:] == ["2000", "20.00", "2000", "20.00"]
    failed_row = next(line for line in lines if line.split()[:2] == ["keep-alive", "5000"])
    assert "failed" in failed_row and "before: wrk printed no figures" in failed_row
    assert "knee: before at None connections, after at 5000" in "\n".join(lines)


def test_bench_client_is_on_the_rate_limit_allow_list(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "STATE", tmp_path)
    allvars = (bench.write_inventory() / "group_vars" / "all.yml").read_text()
    assert f"haproxy_rate_limit_allow: [{bench.CLIENT}]" in allvars
    hosts = (tmp_path / "inventory" / "hosts.yml").read_text()
    assert f"ansible_host: {bench.CLIENT}" in hosts


def test_old_settings_of_the_curve_are_the_variables_the_roles_declare():
    declared = set()
    for role in ("haproxy", "nginx"):
        declared |= set(yaml.safe_load((bench.ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
                        ["argument_specs"]["main"]["options"])
    # nginx_max_clients is the fact the nginx role publishes, overridden on purpose (see OVERLOAD_BEFORE).
    assert set(bench.OVERLOAD_BEFORE) - {"nginx_max_clients"} <= declared
