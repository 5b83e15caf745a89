"""Unit tests of filter_plugins/mysql.py: server ids, topology checks, GTID positions."""

import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "filter_plugins"))
import mysql  # noqa: E402  pylint: disable=wrong-import-position

GROUPS = {"db_primary": ["web-01"], "db_replica": ["web-02", "web-03"]}
IDS = {"web-01": 11, "web-02": 12, "web-03": 13}


@given(st.text(min_size=1, max_size=64))
def test_server_id_is_stable_and_in_range(name):
    first = mysql.mysql_server_id(name)
    assert first == mysql.mysql_server_id(name)
    assert 1 <= first <= 2**32 - 1


def test_server_ids_of_different_hosts_differ():
    ids = {mysql.mysql_server_id(f"db-{n:03d}") for n in range(1000)}
    assert len(ids) == 1000


def test_server_id_needs_a_name():
    with pytest.raises(AnsibleFilterError, match="host name"):
        mysql.mysql_server_id("")


def test_server_ids_of_the_database_hosts_pass():
    assert mysql.check_server_ids(["web-02", "web-01", "web-03"], IDS) == ["web-01", "web-02", "web-03"]


@pytest.mark.parametrize("hosts, ids, message", [
    (["a", "b"], {"a": 1}, "no server id for host 'b'"),
    (["a", "b"], {"a": 1, "b": "x"}, "mysql_server_id of b: 'x' is not an integer"),
    (["a", "b"], {"a": 1, "b": 0}, "mysql_server_id of b: 0 is outside"),
    (["a", "b"], {"a": 5, "b": "5"}, "a and b both have server id 5"),
])
def test_bad_server_ids_name_the_field(hosts, ids, message):
    with pytest.raises(AnsibleFilterError, match=message):
        mysql.check_server_ids(hosts, ids)


@pytest.mark.parametrize("position, count", [
    ("", 0),
    ("0-1-100", 100),
    ("0-1-100,1-2-5", 105),
    (" 0-3-7 ", 7),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", 5),
    ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9,\n4e11fa47-71ca-11e1-9e33-c80aa9429562:1", 9),
])
def test_gtid_transactions(position, count):
    assert mysql.gtid_transactions(position) == count


@pytest.mark.parametrize("position", ["0-1", "abc", "0-1-x", None])
def test_bad_gtid_position_is_refused(position):
    with pytest.raises(AnsibleFilterError, match="gtid position"):
        mysql.gtid_transactions(position)


def test_most_advanced_replica_wins_and_ties_go_to_the_first_name():
    assert mysql.most_advanced({"web-02": "0-1-10", "web-03": "0-1-12"}) == "web-03"
    assert mysql.most_advanced({"web-03": "0-1-12", "web-02": "0-1-12"}) == "web-02"


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 10**6), min_size=1))
def test_most_advanced_is_the_maximum_whatever_the_order(seqs):
    positions = {host: f"0-1-{seq}" for host, seq in seqs.items()}
    winner = mysql.most_advanced(positions)
    assert seqs[winner] == max(seqs.values())
    assert winner == mysql.most_advanced(dict(reversed(list(positions.items()))))


def test_most_advanced_needs_positions():
    with pytest.raises(AnsibleFilterError, match="non-empty"):
        mysql.most_advanced({})


def test_of_equally_advanced_replicas_the_oldest_server_wins():
    """Every other replica can follow the oldest server; none can follow a newer one back."""
    versions = {"web-02": "11.8.3-MariaDB-deb13", "web-03": "10.11.14-MariaDB-0+deb12u2", "web-04": "10.11.9-MariaDB"}
    assert mysql.most_advanced({"web-02": "0-1-12", "web-03": "0-1-12"}, versions) == "web-03"
    assert mysql.most_advanced({"web-02": "0-1-12", "web-03": "0-1-12", "web-04": "0-1-12"}, versions) == "web-04"
    # More advanced beats older: no acknowledged write is given up for a version.
    assert mysql.most_advanced({"web-02": "0-1-13", "web-03": "0-1-12"}, versions) == "web-02"
    # A host that is not tied needs no version.
    assert mysql.most_advanced({"web-02": "0-1-13", "web-05": "0-1-1"}, versions) == "web-02"


@pytest.mark.parametrize("versions, message", [
    (["10.11"], "server versions: need a mapping"),
    ({"web-02": "10.11.6"}, "server versions: none for web-03"),
    ({"web-02": "10.11.6", "web-03": "unknown"}, "server version of web-03: 'unknown' is not a version"),
])
def test_bad_versions_are_refused_naming_the_host(versions, message):
    with pytest.raises(AnsibleFilterError, match=message):
        mysql.most_advanced({"web-02": "0-1-12", "web-03": "0-1-12"}, versions)


@pytest.mark.parametrize("status, expected", [
    # MariaDB and MySQL before 8.0.22 name the columns Slave_*.
    ({"Is_Replica": True, "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes",
      "Slave_SQL_Running_State": "Slave has read all relay log"},
     {"is_replica": True, "io_running": True, "sql_running": True, "running": True}),
    # MySQL 8.0.22 and later: Replica_*.
    ({"Is_Replica": True, "Replica_IO_Running": "Yes", "Replica_SQL_Running": "No", "Last_SQL_Error": "dup key"},
     {"is_replica": True, "io_running": True, "sql_running": False, "running": False, "sql_error": "dup key"}),
    ({"Is_Replica": True, "Slave_IO_Running": "Connecting", "Slave_SQL_Running": "Yes"},
     {"io_running": False, "running": False}),
    # Not a replica: the module returns no replication column.
    ({"Is_Replica": False}, {"is_replica": False, "running": False, "sql_state": ""}),
])
def test_replica_status_reads_either_column_names(status, expected):
    got = mysql.replica_status(status)
    assert {key: got[key] for key in expected} == expected


def test_replica_status_refuses_what_is_not_a_result():
    with pytest.raises(AnsibleFilterError, match="replica status"):
        mysql.replica_status("Yes")


VERTICAL = """*************************** 1. row ***************************
                Slave_IO_State: Waiting for master to send event
                   Master_Host: 172.30.10.11
              Slave_IO_Running: Yes
             Slave_SQL_Running: No
                Last_SQL_Error: Error 'Unknown database': on query.
Default database: ''. Query: 'CREATE TABLE t (id int)'
                 Last_IO_Error:
*************************** 2. row ***************************
                   Master_Host: 172.30.10.12
"""


def test_vertical_output_gives_one_mapping_per_row_with_multi_line_values():
    rows = mysql.mysql_vertical(VERTICAL)
    assert [row["Master_Host"] for row in rows] == ["172.30.10.11", "172.30.10.12"]
    assert rows[0]["Slave_IO_State"] == "Waiting for master to send event"
    assert rows[0]["Last_IO_Error"] == ""
    assert rows[0]["Last_SQL_Error"] == ("Error 'Unknown database': on query.\nDefault database: ''. "
                                         "Query: 'CREATE TABLE t (id int)'")
    state = mysql.replica_status(rows[0])
    assert (state["io_running"], state["sql_running"], state["running"]) == (True, False, False)


def test_vertical_output_of_no_row_is_an_empty_list():
    assert mysql.mysql_vertical("") == []
    assert mysql.mysql_vertical("\n") == []


@pytest.mark.parametrize("text", ["ERROR 1045 (28000): Access denied\n", "*** 1. row ***\n  no field here\n", 7])
def test_vertical_output_refuses_what_the_client_did_not_print_as_rows(text):
    with pytest.raises(AnsibleFilterError, match="infra_mysql_vertical"):
        mysql.mysql_vertical(text)


READ = """=== replica
*************************** 1. row ***************************
   Master_Host: 172.30.10.11
Slave_IO_Running: Yes
=== server
*************************** 1. row ***************************
read_only: 1
  version: 10.11.14-MariaDB-0+deb12u2-log
"""


def test_the_replication_read_by_section():
    read = mysql.mysql_read(READ)
    assert read["replica"] == [{"Master_Host": "172.30.10.11", "Slave_IO_Running": "Yes"}]
    assert read["server"] == {"read_only": "1", "version": "10.11.14-MariaDB-0+deb12u2-log"}
    assert read["semisync"] == []
    primary = mysql.mysql_read("=== server\n*** 1. row ***\nread_only: 0\nversion: 11.8.3\n=== semisync\n"
                               "*** 1. row ***\nVariable_name: Rpl_semi_sync_master_clients\n        Value: 2\n")
    assert primary["replica"] == [] and primary["server"]["read_only"] == "0"
    assert primary["semisync"] == [{"Variable_name": "Rpl_semi_sync_master_clients", "Value": "2"}]
    # A host the run did not read: every section empty, the server's version absent.
    assert mysql.mysql_read("") == {"replica": [], "server": {}, "semisync": []}


@pytest.mark.parametrize("text, message", [
    ("=== replicas\n", "section 'replicas' is not among replica, server, semisync"),
    ("=== server\n=== server\n", "section 'server' is marked twice"),
    ("ERROR 2002 (HY000): Can't connect\n=== server\n", "output before the first section"),
    (None, "must be text"),
])
def test_a_read_this_reader_does_not_know_is_refused_by_name(text, message):
    with pytest.raises(AnsibleFilterError, match=message):
        mysql.mysql_read(text)


def test_a_read_through_an_emulated_terminal_reads_the_same():
    # A raw command under become, over a pty, answers through a terminal: lines end in \r\n.
    assert mysql.mysql_read(READ.replace("\n", "\r\n")) == mysql.mysql_read(READ)
    assert mysql.mysql_vertical(VERTICAL.replace("\n", "\r\n")) == mysql.mysql_vertical(VERTICAL)
