"""The restore plan: which backup and which binary logs bring the data back to a second, and
every bad restore point refused with the field named."""

import calendar
import importlib.util
import time
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

SPEC = importlib.util.spec_from_file_location("backup_filters", Path(__file__).resolve().parents[2] / "filter_plugins" / "backup.py")
backup = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(backup)
plan = backup.infra_backup_restore_plan


def epoch(text):
    """A UTC time as an epoch."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def described(name, start, end, version="10.11.14-MariaDB-0+deb12u2", gtid="0-1-10"):
    """A backup's description as the receiver stores it."""
    return {"name": name, "source": "web-01", "server_version": version, "gtid": gtid,
            "start": epoch(start), "end": epoch(end), "size": 1000, "sha256": "ab" * 32}


NOW = epoch("2026-12-02 12:00:00")
CATALOG = {
    "backups": [
        described("full-20261201T031500Z", "2026-12-01 03:15:00", "2026-12-01 03:16:00", gtid="0-1-100"),
        described("full-20261202T031500Z", "2026-12-02 03:15:00", "2026-12-02 03:16:00", gtid="0-1-200"),
        # A backup of a newer server (a replica of another version): never for a 10.11 target.
        described("full-20261202T050000Z", "2026-12-02 05:00:00", "2026-12-02 05:01:00", version="11.8.3-MariaDB"),
        # A partial upload has no sha256 (the receiver lists only committed backups, but be safe).
        {"name": "full-20261202T060000Z", "start": epoch("2026-12-02 06:00:00"), "end": epoch("2026-12-02 06:01:00")},
    ],
    "binlogs": {
        "web-01": [
            {"name": "mysql-bin.000003", "mtime": epoch("2026-12-01 23:00:00"), "size": 10},
            {"name": "mysql-bin.000005", "mtime": epoch("2026-12-02 11:59:00"), "size": 10},
            {"name": "mysql-bin.000004", "mtime": epoch("2026-12-02 04:00:00"), "size": 10},
        ],
        "web-02": [{"name": "mysql-bin.000009", "mtime": epoch("2026-12-02 11:00:00"), "size": 10}],
    },
}


def test_a_point_takes_the_newest_backup_before_it_and_the_logs_written_since():
    result = plan(CATALOG, "2026-12-02 10:00:00", NOW, "web-01", "10.11.6-MariaDB")
    assert result["backup"]["name"] == "full-20261202T031500Z"
    assert result["binlogs"] == ["mysql-bin.000004", "mysql-bin.000005"]
    assert result["stop_datetime"] == "2026-12-02 10:00:01"
    assert result["binlog_host"] == "web-01"


def test_a_point_between_two_backups_takes_the_older():
    result = plan(CATALOG, "2026-12-02 03:15:30", NOW, "web-01", "10.11.6")
    assert result["backup"]["name"] == "full-20261201T031500Z"
    assert result["binlogs"] == ["mysql-bin.000003", "mysql-bin.000004", "mysql-bin.000005"]


def test_no_point_is_the_latest_state():
    result = plan(CATALOG, "", NOW, "web-01", "10.11.6")
    assert result["backup"]["name"] == "full-20261202T031500Z"
    assert result["stop_datetime"] == ""
    assert result["point"] == "latest"


def test_the_target_version_chooses_among_the_backups():
    assert plan(CATALOG, "", NOW, "web-02", "11.8.3-MariaDB")["backup"]["name"] == "full-20261202T050000Z"
    with pytest.raises(AnsibleFilterError, match="db_restore_target runs 11.4.*10.11, 11.8"):
        plan(CATALOG, "", NOW, "web-01", "11.4.2-MariaDB")


@pytest.mark.parametrize("point, message", [
    ("2026-12-02 12:00:01", "db_restore_point: 2026-12-02 12:00:01 is in the future"),
    ("2026-11-30 00:00:00", "db_restore_point: 2026-11-30 00:00:00 is before the oldest backup, full-20261201T031500Z"),
    ("yesterday", "db_restore_point: got 'yesterday', expected a UTC time"),
    ("2026-12-02T10:00:00", "db_restore_point: got '2026-12-02T10:00:00'"),
    ("2026-02-30 10:00:00", "db_restore_point: '2026-02-30 10:00:00' is not a time"),
    (20261202, "db_restore_point: got 20261202"),
])
def test_a_bad_point_is_refused_naming_the_field(point, message):
    with pytest.raises(AnsibleFilterError, match=message):
        plan(CATALOG, point, NOW, "web-01", "10.11.6")


def test_an_empty_store_is_refused():
    with pytest.raises(AnsibleFilterError, match="no complete backup yet"):
        plan({"backups": [], "binlogs": {}}, "", NOW, "web-01")
    with pytest.raises(AnsibleFilterError, match="backup catalog"):
        plan(["not", "a", "catalog"], "", NOW, "web-01")


def test_a_backup_whose_gtid_is_not_one_is_refused():
    """The description comes from a database server: never a command's argument unchecked."""
    planted = dict(CATALOG, backups=[described("full-20261202T031500Z", "2026-12-02 03:15:00",
                                               "2026-12-02 03:16:00", gtid="0-1-5;reboot")])
    with pytest.raises(AnsibleFilterError, match="its GTID position '0-1-5;reboot' is not one"):
        plan(planted, "", NOW, "web-01")


def test_no_archive_for_the_host_means_no_binlogs():
    assert plan(CATALOG, "", NOW, "web-03", "")["binlogs"] == []


def test_a_point_before_a_restore_reads_the_history_that_was_live_then():
    """A restore at 10:30 moved web-01's archive aside and started a new one (whose first file
    replays old transactions under a new header): a point before 10:30 reads the old folder."""
    catalog = {
        "backups": CATALOG["backups"][:2] + [
            described("full-20261202T103500Z", "2026-12-02 10:35:00", "2026-12-02 10:36:00", gtid="0-1-300")],
        "binlogs": {
            "web-01.before-restore-20261202T103000Z": CATALOG["binlogs"]["web-01"],
            "web-01": [{"name": "mysql-bin.000001", "mtime": epoch("2026-12-02 11:50:00"), "size": 10}],
        },
    }
    early = plan(catalog, "2026-12-02 10:00:00", NOW, "web-01", "10.11.6")
    assert early["binlog_folder"] == "web-01.before-restore-20261202T103000Z"
    assert early["backup"]["name"] == "full-20261202T031500Z"
    assert early["binlogs"] == ["mysql-bin.000004", "mysql-bin.000005"]
    late = plan(catalog, "", NOW, "web-01", "10.11.6")
    assert late["binlog_folder"] == "web-01" and late["backup"]["name"] == "full-20261202T103500Z"
    assert late["binlogs"] == ["mysql-bin.000001"]
    # Between the restore and the first backup after it, no backup belongs to that history.
    with pytest.raises(AnsibleFilterError, match="db_restore_point: 2026-12-02 10:32:00 lies in the history begun"):
        plan(catalog, "2026-12-02 10:32:00", NOW, "web-01", "10.11.6")


seed = backup.infra_backup_seed_choice


def test_a_replica_is_seeded_from_the_newest_backup_of_its_version():
    assert seed(CATALOG, "10.11.6-MariaDB")["backup"]["name"] == "full-20261202T031500Z"
    assert seed(CATALOG, "11.8.3-MariaDB")["backup"]["name"] == "full-20261202T050000Z"


def test_no_backup_of_the_replicas_version_says_why():
    assert seed(CATALOG, "11.4.2-MariaDB") == {"reason": "no complete backup of a 11.4 server on the backup host"}
    assert "no complete backup" in seed({"backups": []}, "10.11.6")["reason"]


def test_a_backup_from_before_a_restore_is_never_a_seed():
    """After a restore at 10:30 the primary's history starts over: the older backups' GTIDs
    name transactions it no longer has, whichever host's archive was set aside."""
    catalog = {"backups": CATALOG["backups"][:2],
               "binlogs": {"web-03.before-restore-20261202T103000Z": [], "web-01": [],
                           "web-01.before-gap-20261202T110000Z": []}}
    assert "since the last restore (2026-12-02 10:30:00 UTC)" in seed(catalog, "10.11.6")["reason"]
    catalog["backups"].append(described("full-20261202T103500Z", "2026-12-02 10:35:00", "2026-12-02 10:36:00",
                                         gtid="0-1-300"))
    # A gap in an archive is no new history: the backup before it still seeds.
    assert seed(catalog, "10.11.6")["backup"]["name"] == "full-20261202T103500Z"


def test_a_backup_without_a_gtid_is_never_a_seed():
    catalog = {"backups": [described("full-1", "2026-12-02 03:15:00", "2026-12-02 03:16:00", gtid="")]}
    assert "with a GTID position" in seed(catalog, "10.11.6")["reason"]


def test_the_restores_own_backup_is_used_when_its_version_fits():
    given = CATALOG["backups"][0]
    assert seed(None, "10.11.14-MariaDB", given) == {"backup": given}
    assert seed(None, "11.8.3-MariaDB", given) == {"reason": "the restore's backup full-20261201T031500Z is of 10.11, "
                                                             "this server runs 11.8"}


@pytest.mark.parametrize("catalog, version, message", [
    (CATALOG, "", "infra_backup_seed_choice: version '' is not a server version"),
    ([], "10.11.6", "backup catalog: expected a mapping with a 'backups' list"),
    (CATALOG, "10.11.6", "given must be a backup's description"),
])
def test_bad_input_to_the_seed_choice_is_refused(catalog, version, message):
    with pytest.raises(AnsibleFilterError, match=message):
        seed(catalog, version, "full-1" if "given" in message else None)
