"""Database backups on the live lab (roles/backup, README "Backups and restores"): encrypted full
backups that only add to the backup host, the binary log archive following the primary, damaged
backups refused before anything is restored, and the point-in-time restore drill.
"""

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import address, get, names_of, playbook, recap, record_drill, site_setting, sql

testinfra_hosts = ["ansible://" + names_of("backups")[0]]

STORE_HOST = names_of("backups")[0]
PRIMARY = names_of("db_primary")[0]
DATABASES = names_of("db_primary", "db_replica")
DB = site_setting("mysql_app_database")
STORE = site_setting("backup_store_dir")
STORE_USER = site_setting("backup_store_user")
RECEIVER = "/usr/local/sbin/infra-backup-receive"


def source():
    """The database host whose timer takes the backups (exactly one)."""
    enabled = [name for name in DATABASES
               if get(name).run("systemctl is-enabled infra-db-backup.timer").stdout.strip() == "enabled"]
    assert len(enabled) == 1, f"the backup timer must run on exactly one database host, runs on {enabled}"
    return enabled[0]


def catalog(host):
    """What the backup host holds: its receiver's catalog."""
    with host.sudo():
        return json.loads(host.check_output(f"{RECEIVER} --catalog"))


def backup_now():
    """playbooks/db-backup.yml, as an operator runs it; returns the run."""
    return playbook(path="playbooks/db-backup.yml")


def as_server(server, command, store_host=STORE_HOST):
    """Run the receiver's SSH login from a database server with its backup key, as the script does."""
    store = address(store_host)
    with server.sudo():
        return server.run(
            f"ssh -i /etc/infra-backup/id_ed25519 -o BatchMode=yes -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile=/etc/infra-backup/known_hosts -o StrictHostKeyChecking=yes "
            f"{STORE_USER}@{store} -- {command}")


def identity():
    """The lab's private age key (the controller's: never on a server)."""
    return get(PRIMARY).ansible.get_variables()["backup_age_identity"]


def test_a_backup_now_is_stored_encrypted_and_counted(host):
    name = source()
    before = {b["name"] for b in catalog(host)["backups"]}
    run = backup_now()
    assert run.returncode == 0, run.stdout[-3000:]
    new = [b for b in catalog(host)["backups"] if b["name"] not in before]
    assert len(new) == 1, new
    backup = new[0]
    assert backup["source"] == name and backup["gtid"], backup
    stored = host.file(backup["path"])
    with host.sudo():
        assert stored.user == "root" and stored.mode == 0o600
        assert stored.size == backup["size"] > 0
        assert host.check_output(f"sha256sum {backup['path']}").split()[0] == backup["sha256"]
        assert host.check_output(f"head -c 21 {backup['path']}") == "age-encryption.org/v1"
    # Only the private key decrypts it, on the controller; what comes out is a zstd stream.
    with tempfile.TemporaryDirectory() as tmp:
        with host.sudo():
            data = host.run(f"base64 -w0 {backup['path']}").stdout
        Path(tmp, "b.age").write_bytes(__import__("base64").b64decode(data))
        Path(tmp, "id").write_text(identity() + "\n")
        out = subprocess.run(["age", "-d", "-i", f"{tmp}/id", f"{tmp}/b.age"], capture_output=True, check=True).stdout
        assert out[:4] == b"\x28\xb5\x2f\xfd", "not a zstd stream"
    # The source's metrics say so (node exporter's textfile collector).
    with get(name).sudo():
        metrics = get(name).file("/var/lib/prometheus/node-exporter/infra_db_backup.prom").content_string
    assert "infra_db_backup_last_run_success 1" in metrics
    assert f"infra_db_backup_last_success_size_bytes {backup['size']}" in metrics


@pytest.mark.parametrize("server_name", DATABASES)
def test_every_database_server_is_let_in_by_every_backup_host(server_name):
    # Any of them may become the backup source after a failover: each one's key works on each
    # backup host (the servers write one authorized_keys file there; none may drop another's key).
    for store_host in names_of("backups"):
        result = as_server(get(server_name), "check", store_host)
        assert result.rc == 0, f"{server_name} -> {store_host}: {result.stdout} {result.stderr}"


def test_a_database_server_can_add_but_never_read_replace_or_delete(host):
    name = source()
    server = get(name)
    held = catalog(host)["backups"]
    assert held, "no backup to protect"
    victim = held[-1]
    for command in [f"rm -rf {STORE}", f"cat {victim['path']}", "ls /", "sh -c id",
                    f"put {victim['name']}", f"commit {victim['name']}", "--catalog"]:
        result = as_server(server, command)
        assert result.rc != 0, f"{command!r} was accepted: {result.stdout} {result.stderr}"
        assert "refused" in result.stderr, result.stderr
    # An interactive login or a forwarded port gets nothing either.
    assert as_server(server, "").rc != 0
    assert catalog(host)["backups"] == held
    with host.sudo():
        assert host.check_output(f"sha256sum {victim['path']}").split()[0] == victim["sha256"]
        # Nothing of the store is the login account's.
        assert host.run(f"find {STORE} -user {STORE_USER} | grep -q .").rc != 0


def test_the_backup_host_away_fails_loudly_and_changes_nothing_on_the_server(host):
    name = source()
    server = get(name)
    store = address(STORE_HOST)
    held = catalog(host)["backups"]
    rule = f"OUTPUT -d {store} -p tcp --dport 22 -j REJECT"
    with server.sudo():
        uptime = sql(server, "SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1]
        server.run_test(f"iptables -I {rule}")
        try:
            run = backup_now()
        finally:
            server.run(f"iptables -D {rule}")
        assert run.returncode != 0, "the backup did not fail"
        journal = server.check_output("journalctl -u infra-db-backup.service -n 20 --no-pager -o cat")
        assert f"BACKUP FAILED" in journal and "unreachable" in journal, journal
        metrics = server.file("/var/lib/prometheus/node-exporter/infra_db_backup.prom").content_string
        assert "infra_db_backup_last_run_success 0" in metrics
        assert server.run("ls -d /var/tmp/infra-db-backup.* 2>/dev/null").stdout == "", "left files behind"
        assert int(sql(server, "SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1]) >= int(uptime)
    assert catalog(host)["backups"] == held
    # Back: the next backup works and the metric returns to 1.
    assert backup_now().returncode == 0


def test_the_archive_holds_a_write_within_seconds_over_an_account_that_reads_nothing_else(host):
    primary = get(PRIMARY)
    token = f"archive-{time.time_ns()}"
    sql(primary, "CREATE TABLE IF NOT EXISTS backup_probe (id INT AUTO_INCREMENT PRIMARY KEY, token VARCHAR(64))", DB)
    sql(primary, f"INSERT INTO backup_probe (token) VALUES ('{token}')", DB)
    folder = f"{STORE}/binlog/{PRIMARY}"
    deadline, found = time.time() + 20, False
    with host.sudo():
        while time.time() < deadline and not found:
            newest = host.check_output(f"ls {folder} | sort | tail -n1")
            found = token in host.run(f"mariadb-binlog -v --base64-output=decode-rows {folder}/{newest}").stdout
            time.sleep(0.5)
        assert found, f"{token} is not in the archive after 20 s"
        # The archive's account reads binary logs, not data, and only over TLS with its certificate.
        cnf = "/etc/infra-backup/binlog-archiver.cnf"
        denied = host.run(f"mariadb --defaults-extra-file={cnf} -h {address(PRIMARY)} "
                          f"-e 'SELECT * FROM {DB}.backup_probe'")
        assert denied.rc != 0 and "denied" in denied.stderr, denied.stderr
    assert host.service("infra-binlog-archive").is_running


def damaged_copy(host, how):
    """The newest backup copied under a newer name, then damaged: `flip` one byte (the recorded
    sha256 no longer matches) or `truncate` it (recorded to match, as if cut before the upload
    ended: only decryption can tell)."""
    newest = catalog(host)["backups"][-1]
    folder = os.path.dirname(newest["path"])
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(newest["end"] + 1))
    name = f"full-{stamp}"
    meta = dict(newest, name=name, path=None, start=newest["start"] + 1, end=newest["end"] + 1)
    meta.pop("path")
    with host.sudo():
        host.run_test(f"cp {newest['path']} {folder}/{name}.age")
        if how == "flip":
            host.run_test(f"printf 'X' | dd of={folder}/{name}.age bs=1 seek=200 conv=notrunc status=none")
        else:
            host.run_test(f"truncate -s {newest['size'] // 2} {folder}/{name}.age")
            meta["size"] = newest["size"] // 2
            meta["sha256"] = host.check_output(f"sha256sum {folder}/{name}.age").split()[0]
        host.run_test(f"cat > {folder}/{name}.json <<'EOF'\n{json.dumps(meta)}\nEOF")
    return f"{folder}/{name}"


@pytest.mark.parametrize("how, says", [("flip", "is damaged"), ("truncate", "does not decrypt whole")])
def test_a_damaged_backup_is_refused_before_anything_is_restored(host, how, says):
    primary = get(PRIMARY)
    uptime = int(sql(primary, "SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1])
    path = damaged_copy(host, how)
    try:
        run = playbook(path="playbooks/db-restore.yml")
    finally:
        with host.sudo():
            host.run(f"rm -f {path}.age {path}.json")
    assert run.returncode != 0, "a damaged backup was restored"
    said = " ".join((run.stdout + run.stderr).split())
    assert says in said and "Nothing was restored" in said, run.stdout[-3000:]
    assert int(sql(primary, "SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1]) >= uptime, "the server was restarted"
    assert recap(run).get(PRIMARY, 0) == 0


def test_a_dry_run_says_which_backup_and_logs_and_changes_nothing(host):
    newest = catalog(host)["backups"][-1]
    run = playbook("--check", path="playbooks/db-restore.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert f"full backup {newest['name']}" in run.stdout, run.stdout[-3000:]
    assert "archived binary logs of" in run.stdout
    assert all(changed == 0 for changed in recap(run).values()), recap(run)


# On the primary: commit numbered rows one by one (autocommit, as the application does) and log
# each with the time COMMIT returned; a failure (the table dropped) is logged and retried.
WRITER = r"""
import sys, time, pymysql
log = open(sys.argv[1], "a", buffering=1)
n, db = 0, None
while True:
    try:
        db = db or pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="root", autocommit=True)
        n += 1
        db.cursor().execute("INSERT INTO %s.pitr_drill (n) VALUES (%%s)" % sys.argv[2], (n,))
        log.write("%d %.6f\n" % (n, time.time()))
    except Exception as error:
        log.write("# %d %.6f %s\n" % (n, time.time(), error))
        db = None
        time.sleep(0.05)
"""


def acked(server):
    """{row: time its COMMIT returned} from the writer's log."""
    with server.sudo():
        lines = server.run("cat /root/pitr-acked 2> /dev/null").stdout.splitlines()
    return {int(n): float(t) for n, t in (line.split() for line in lines if line[:1].isdigit())}


def version(server):
    """A database server's major.minor version: a physical backup restores to its own only."""
    return re.match(r"[0-9]+[.][0-9]+", sql(server, "SELECT @@version")[0][0]).group(0)


def wait_for_rows(server, count, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline and len(acked(server)) < count:
        time.sleep(0.3)
    assert len(acked(server)) >= count, f"the writer committed {len(acked(server))} rows, not {count}"


@pytest.mark.drill
def test_drill_a_dropped_table_is_restored_to_the_second_before(host):
    """Rows committed under a running backup, a DROP TABLE at T, db-restore.yml to T - 1 s: every
    row acknowledged before T is back, nothing after it, replication and semi-sync run again."""
    primary = get(PRIMARY)
    sql(primary, "DROP TABLE IF EXISTS pitr_drill", DB)
    sql(primary, "CREATE TABLE pitr_drill (n INT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))", DB)
    with primary.sudo():
        primary.run_test(f"cat > /root/pitr-writer.py <<'EOF'\n{WRITER}\nEOF\nrm -f /root/pitr-acked")
        primary.run_test(f"setsid -f python3 /root/pitr-writer.py /root/pitr-acked {DB} > /dev/null 2>&1 < /dev/null")
    try:
        wait_for_rows(primary, 100)
        backup = backup_now()
        assert backup.returncode == 0, backup.stdout[-3000:]
        at_backup_end = len(acked(primary))
        # Rows of more than one whole second after the backup: only the binary logs hold them.
        wait_for_rows(primary, at_backup_end + 200)
        time.sleep(2)
        with primary.sudo():
            dropped = float(primary.check_output(
                f"mariadb -N -B -e 'SELECT UNIX_TIMESTAMP(NOW(6)); DROP TABLE {DB}.pitr_drill'"))
        time.sleep(1.5)
    finally:
        with primary.sudo():
            primary.run("pkill -f '[p]itr-writer.py'")
    accident = int(dropped)
    point = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(accident - 1))
    rows = acked(primary)

    started = time.time()
    run = playbook("-e", f"db_restore_point='{point}'", path="playbooks/db-restore.yml")
    restore_s = time.time() - started
    assert run.returncode == 0, run.stdout[-3000:]

    present = {int(row[0]) for row in sql(primary, "SELECT n FROM pitr_drill", DB)}
    before = {n for n, t in rows.items() if t < accident}
    after = {n for n, t in rows.items() if t >= accident + 0.5}
    missing = sorted(before - present)
    assert not missing, f"{len(missing)} rows acknowledged before {point} + 1 s are missing: {missing[:20]}"
    assert not present & after, f"rows committed after the point came back: {sorted(present & after)[:20]}"
    replayed = [n for n in present if n > at_backup_end]
    assert len(replayed) >= 100, f"only {len(replayed)} restored rows came after the backup: the binary logs are unproven"
    # Replication and semi-sync run again, as a converge leaves them; the replicas hold the same rows.
    # A replica of the backup's server version (the primary's) was seeded from that same backup,
    # the primary's binary log giving it the rest; any other from a dump of the restored primary.
    said = " ".join(run.stdout.split())
    seeded = {}
    for name in DATABASES:
        if name != PRIMARY:
            assert {int(r[0]) for r in sql(get(name), "SELECT n FROM pitr_drill", DB)} == present, name
            same = version(get(name)) == version(primary)
            seeded[name] = "backup" if f"Seeding {name} from backup" in said else "dump"
            assert seeded[name] == ("backup" if same else "dump"), (name, seeded, said[-3000:])
    assert sql(primary, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'")[0][1] == "ON"
    sql(primary, "INSERT INTO pitr_drill (n) VALUES (-1)", DB)
    for name in DATABASES:
        if name != PRIMARY:
            deadline = time.time() + 15
            while time.time() < deadline and not sql(get(name), "SELECT n FROM pitr_drill WHERE n = -1", DB):
                time.sleep(0.3)
            assert sql(get(name), "SELECT n FROM pitr_drill WHERE n = -1", DB) == [["-1"]], name
    newest = max(t for n, t in rows.items() if n in present)
    figure = {"replicas_seeded_from": seeded,
              "rows_acknowledged": len(rows), "rows_before_the_point": len(before), "rows_restored": len(present),
              "lost": len(missing), "rows_acknowledged_when_the_backup_ended": at_backup_end,
              "rows_restored_from_binary_logs_at_least": len(replayed),
              "restore_s": round(restore_s, 1), "recovery_point_s_before_the_drop": round(dropped - newest, 2)}
    record_drill("DROP TABLE, then db-restore.yml to the second before", figure)
    print(f"\npoint-in-time restore drill: {json.dumps(figure)}")

    # The same point on a scratch host (the lab's client, the primary's Debian release): the site
    # is left alone, the table is there.
    scratch = names_of("lab_support")[[get(n).system_info.codename for n in names_of("lab_support")].index(
        primary.system_info.codename)]
    uptime = int(sql(primary, "SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1])
    run = playbook("-e", f"db_restore_point='{point}'", "-e", f"db_restore_target={scratch}",
                   path="playbooks/db-restore.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert {int(r[0]) for r in sql(get(scratch), "SELECT n FROM pitr_drill", DB)} == present
    assert int(sql(primary, "SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1]) >= uptime, "the site's primary was touched"


@pytest.mark.parametrize("extra, says", [
    ("db_restore_point='2999-01-01 00:00:00'", "db_restore_point: 2999-01-01 00:00:00 is in the future"),
    ("db_restore_point='2000-01-01 00:00:00'", "db_restore_point: 2000-01-01 00:00:00 is before the oldest backup"),
    ("db_restore_point=yesterday", "db_restore_point: got 'yesterday', expected a UTC time"),
    ("backup_age_identity=''", "backup_age_identity is empty"),
    ("db_restore_target=nosuch", "db_restore_target (nosuch) is not a host of the inventory"),
])
def test_a_bad_restore_request_is_refused_naming_the_field_and_changes_nothing(extra, says):
    run = playbook("-e", extra, path="playbooks/db-restore.yml")
    assert run.returncode != 0, run.stdout[-3000:]
    assert says in " ".join((run.stdout + run.stderr).split()), (run.stdout + run.stderr)[-3000:]
    assert all(changed == 0 for host, changed in recap(run).items() if host != "localhost"), recap(run)
