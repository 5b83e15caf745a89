"""The database tier on the live servers: replication over TLS, semi-sync, least privilege,
and the failover drill (last: it kills the primary's container).
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, address, container, get, names_of, playbook, recap, record_drill, site_setting, sql

testinfra_hosts = ["ansible://" + names_of("db_primary")[0]]

PRIMARY = names_of("db_primary")[0]
REPLICAS = names_of("db_replica")
CA = "/etc/ssl/infra/ca.pem"
# The application's database and account, as the inventory and the mysql role set them.
DB, USER = site_setting("mysql_app_database"), site_setting("mysql_app_user")


def status(server, name):
    rows = sql(server, f"SHOW GLOBAL STATUS LIKE '{name}'")
    return rows[0][1] if rows else None


def replica_status(server):
    with server.sudo():
        out = server.check_output("mariadb -e 'SHOW SLAVE STATUS\\G'")
    pairs = (line.strip().partition(":") for line in out.splitlines() if ":" in line)
    return {key: value.strip() for key, _, value in pairs}


def secret(name):
    return get(PRIMARY).ansible.get_variables()[name]


def wait_for_row(server, query, expected, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = sql(server, query)
        if rows == expected:
            return rows
        time.sleep(0.3)
    return sql(server, query)


def test_a_row_written_on_the_primary_is_read_on_every_replica(host):
    token = f"row-{time.time_ns()}"
    sql(host, "CREATE TABLE IF NOT EXISTS probe (id INT AUTO_INCREMENT PRIMARY KEY, token VARCHAR(64))", DB)
    sql(host, f"INSERT INTO probe (token) VALUES ('{token}')", DB)
    for name in REPLICAS:
        assert wait_for_row(get(name), f"SELECT token FROM {DB}.probe WHERE token='{token}'", [[token]]) == [[token]]


@pytest.mark.parametrize("name", REPLICAS)
def test_replication_runs_with_gtid_over_verified_tls(name):
    state = replica_status(get(name))
    assert state["Slave_IO_Running"] == "Yes" and state["Slave_SQL_Running"] == "Yes", state
    assert state["Master_Host"] == address(PRIMARY)
    assert state["Using_Gtid"] == "Slave_Pos"
    assert state["Master_SSL_Allowed"] == "Yes"
    assert state["Master_SSL_Verify_Server_Cert"] == "Yes"
    assert sql(get(name), "SELECT @@global.read_only") == [["1"]]


def test_versions_differ_across_primary_and_replica():
    versions = {name: sql(get(name), "SELECT @@version")[0][0].split("-")[0] for name in [PRIMARY, *REPLICAS]}
    assert len(set(versions.values())) > 1, versions


def test_replication_account_needs_tls_and_a_client_certificate():
    replica = get(REPLICAS[0])
    login = f"mariadb -h {address(PRIMARY)} -u replicator -p{secret('mysql_replication_password')} -N -B"
    with replica.sudo():
        clear = replica.run(f"{login} --skip-ssl -e 'SELECT 1'")
        no_cert = replica.run(f"{login} --ssl --ssl-ca={CA} -e 'SELECT 1'")
        with_cert = replica.run(f"{login} --ssl --ssl-ca={CA} --ssl-verify-server-cert "
                                f"--ssl-cert=/etc/ssl/infra/mysql.pem --ssl-key=/etc/ssl/infra/mysql.key "
                                f"-e \"SHOW STATUS LIKE 'Ssl_version'\"")
    assert clear.rc != 0, clear.stdout
    assert no_cert.rc != 0 and "Access denied" in no_cert.stderr, no_cert.stderr
    assert with_cert.rc == 0, with_cert.stderr
    assert with_cert.stdout.split()[1] in ("TLSv1.2", "TLSv1.3")


def test_semi_sync_acknowledges_every_commit_and_never_falls_back(host):
    assert status(host, "Rpl_semi_sync_master_status") == "ON"
    assert int(status(host, "Rpl_semi_sync_master_clients")) == len(REPLICAS)
    assert sql(host, "SELECT @@global.rpl_semi_sync_master_wait_point") == [["AFTER_SYNC"]]
    acked, not_acked, fallbacks = (int(status(host, f"Rpl_semi_sync_master_{v}")) for v in ("yes_tx", "no_tx", "no_times"))
    sql(host, "CREATE TABLE IF NOT EXISTS semisync (n INT PRIMARY KEY)", DB)
    sql(host, "; ".join(f"REPLACE INTO semisync VALUES ({n})" for n in range(50)), DB)
    assert int(status(host, "Rpl_semi_sync_master_yes_tx")) >= acked + 50
    assert int(status(host, "Rpl_semi_sync_master_no_tx")) == not_acked
    assert int(status(host, "Rpl_semi_sync_master_no_times")) == fallbacks
    assert status(host, "Rpl_semi_sync_master_status") == "ON"


def test_the_certificate_reload_writes_nothing_to_the_binary_log():
    """The statement the role's handler runs when a database certificate changes (the flavour's
    mysql_tls_reload) loads it without an event in any server's binary log: logged, it was
    replicated, and on the primary it waited for the replicas' acknowledgement (ten seconds of
    the first converge, while they restarted)."""
    statement = yaml.safe_load((ROOT / "roles/mysql/vars/mariadb.yml").read_text())["mysql_tls_reload"]
    for name in [PRIMARY, *REPLICAS]:
        server = get(name)
        before = sql(server, "SHOW MASTER STATUS")
        assert before, f"{name} writes no binary log"
        sql(server, statement)
        assert sql(server, "SHOW MASTER STATUS") == before, f"{statement} on {name} wrote to its binary log"
    assert replica_status(get(REPLICAS[0]))["Slave_SQL_Running"] == "Yes"


def test_application_account_has_least_privilege_over_tls(host):
    client = get(REPLICAS[0])  # a web server, in the application's group
    login = (f"mariadb -h {address(PRIMARY)} -u {USER} -p{secret('mysql_app_password')} "
             f"--ssl --ssl-ca={CA} --ssl-verify-server-cert -N -B {DB}")
    sql(host, "CREATE TABLE IF NOT EXISTS app (id INT PRIMARY KEY)", DB)
    allowed = client.run(f"{login} -e 'REPLACE INTO app VALUES (1); SELECT COUNT(*) FROM app'")
    assert allowed.rc == 0, allowed.stderr
    for statement in ("CREATE TABLE evil (id INT)", "DROP TABLE app", "SELECT * FROM mysql.user",
                      f"GRANT ALL ON {DB}.* TO {USER}"):
        denied = client.run(f"{login} -e '{statement}'")
        assert denied.rc != 0 and "denied" in denied.stderr, statement
    clear = client.run(f"mariadb -h {address(PRIMARY)} -u {USER} -p{secret('mysql_app_password')} --skip-ssl "
                       f"-e 'SELECT 1'")
    assert clear.rc != 0


def test_the_replica_refuses_application_writes():
    replica = get(REPLICAS[0])
    with replica.sudo():
        write = replica.run(f"mariadb -u {USER} -p{secret('mysql_app_password')} {DB} -e 'REPLACE INTO app VALUES (2)'")
    assert write.rc != 0 and "read-only" in write.stderr, write.stderr


def test_a_second_converge_of_the_databases_changes_nothing():
    run = playbook("--tags", "db")
    assert run.returncode == 0, run.stdout[-3000:]
    changed = recap(run)
    assert all(changed[name] == 0 for name in [PRIMARY, *REPLICAS]), changed


def wait_task_hosts(run):
    """The hosts the primary's wait for its semi-synchronous replicas ran on, in a playbook run."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    body = plain.split("TASK [mysql : Wait until the primary has its semi-synchronous replicas]", 1)[1].split("\nTASK [", 1)[0]
    return re.findall(r"^ok: \[([^\]]+)\]", body, re.M)


def test_a_replica_stopped_by_hand_runs_again_and_the_primary_waits_for_it():
    """The primary's one read carries its semi-sync clients, and it waits for its replicas only
    where that read lacks one, semi-sync is off or a replica was mended in the run (issue 19's
    shortcut): a replica stopped by hand is started again, the primary waits, and the run ends
    with every replica connected and semi-sync on; a run with nothing to mend does not wait."""
    replica, primary = get(REPLICAS[-1]), get(PRIMARY)
    with replica.sudo():
        replica.run_test("mariadb -e 'STOP SLAVE'")
    assert replica_status(replica)["Slave_IO_Running"] == "No"
    run = playbook("--tags", "db")
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap(run)[REPLICAS[-1]] >= 1, run.stdout[-3000:]
    assert wait_task_hosts(run) == [PRIMARY], run.stdout[-3000:]
    state = replica_status(replica)
    assert (state["Slave_IO_Running"], state["Slave_SQL_Running"]) == ("Yes", "Yes"), state
    assert int(status(primary, "Rpl_semi_sync_master_clients")) == len(REPLICAS)
    assert status(primary, "Rpl_semi_sync_master_status") == "ON"
    again = playbook("--tags", "db")
    assert again.returncode == 0 and all(n == 0 for n in recap(again).values()), again.stdout[-3000:]
    assert wait_task_hosts(again) == [], again.stdout[-3000:]


def test_accounts_changed_by_hand_are_made_right_by_the_next_run():
    """The accounts' module calls are skipped where neither the accounts wanted nor the tables of
    accounts changed since the role last made sure of them (one read of their checksums): a
    privilege granted and a password set by hand change a checksum, and the next run undoes both."""
    name = REPLICAS[-1]
    server = get(name)
    peer = address(PRIMARY)
    account = f"'{site_setting('mysql_replication_user')}'@'{peer}'"
    grants = f"SHOW GRANTS FOR {account}"
    wanted = sql(server, grants)
    assert "SELECT" not in wanted[0][0], wanted
    sql(server, f"SET sql_log_bin = 0; GRANT SELECT ON *.* TO {account}; "
                f"SET PASSWORD FOR '{USER}'@'localhost' = PASSWORD('set-by-hand')")
    run = playbook("--tags", "db", "--limit", name)
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap(run)[name] >= 1, run.stdout[-3000:]
    assert sql(server, grants) == wanted, "the privilege granted by hand is still there"
    with server.sudo():
        login = server.run(f"mariadb -u {USER} -p{secret('mysql_app_password')} {DB} -e 'SELECT 1'")
    assert login.rc == 0, f"the application's password set by hand stayed: {login.stderr}"



def test_a_monitoring_account_changed_by_hand_is_made_right_by_the_next_run():
    """The monitoring accounts' module calls are skipped where the role's read of the accounts
    found the tables as recorded, with each monitoring account's line: a limit raised by hand on
    the mysqld exporter's account changes a checksum, and a run of the database and monitoring
    plays puts it back."""
    name = REPLICAS[-1]
    server = get(name)
    user = "prometheus"  # roles/exporters/tasks/mysqld.yml: mysql_monitor_account
    limit = f"SELECT max_user_connections FROM mysql.user WHERE user = '{user}' AND host = 'localhost'"
    wanted = sql(server, limit)
    assert wanted and wanted[0][0] != "10", wanted
    sql(server, f"SET sql_log_bin = 0; ALTER USER '{user}'@'localhost' WITH MAX_USER_CONNECTIONS 10")
    assert sql(server, limit) == [["10"]]
    run = playbook("--tags", "db,monitoring", "--limit", name)
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap(run)[name] >= 1, run.stdout[-3000:]
    assert sql(server, limit) == wanted, "the limit raised by hand on the exporter's account stayed"
    run = playbook("--tags", "db,monitoring", "--limit", name)
    assert run.returncode == 0 and recap(run)[name] == 0, run.stdout[-3000:]


def test_the_archive_account_changed_by_hand_is_made_right_by_the_next_run():
    """The backup role's binary log archive account joins the accounts' record (a line of its
    own): a privilege revoked by hand changes a checksum, a run of the database and backup plays
    grants it again, and the next run skips the account's module as one task. That run has no
    common role: a package of the backup role removed by hand comes back from site.yml's own
    install of the run's roles' packages (the roles' own install is not in site.yml's runs)."""
    name = REPLICAS[-1]
    server = get(name)
    user = site_setting("backup_binlog_user")
    hosts = [row[0] for row in sql(server, f"SELECT host FROM mysql.user WHERE user = '{user}'")]
    assert hosts, f"no {user} account on {name}"
    account = f"'{user}'@'{hosts[0]}'"
    wanted = sql(server, f"SHOW GRANTS FOR {account}")
    assert "BINLOG MONITOR" in wanted[0][0], wanted
    sql(server, f"SET sql_log_bin = 0; REVOKE BINLOG MONITOR ON *.* FROM {account}")
    assert "BINLOG MONITOR" not in sql(server, f"SHOW GRANTS FOR {account}")[0][0]
    package = "age"  # in backup_packages, needed by nothing else
    with server.sudo():
        server.run_test(f"DEBIAN_FRONTEND=noninteractive apt-get remove -y -q {package}")
    assert not server.package(package).is_installed
    run = playbook("--tags", "db,backup", "--limit", name)
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap(run)[name] >= 1, run.stdout[-3000:]
    assert sql(server, f"SHOW GRANTS FOR {account}") == wanted, "the privilege revoked by hand stayed revoked"
    assert server.package(package).is_installed, f"{package}, removed by hand, was not installed again"
    run = playbook("--tags", "db,backup", "--limit", name)
    assert run.returncode == 0 and recap(run)[name] == 0, run.stdout[-3000:]
    assert "archive_account.yml" not in run.stdout, "the account's module ran although the record shows it current"


WRITER = r"""
import os, ssl, sys, time, pymysql
host, password, out = sys.argv[1], sys.argv[2], sys.argv[3]
db = pymysql.connect(host=host, user="foobar", password=password, database="foobar",
                     ssl={"ca": "/etc/ssl/infra/ca.pem"}, connect_timeout=5, read_timeout=30, write_timeout=30)
with open(out, "w") as log:
    n = 0
    while True:
        n += 1
        try:
            with db.cursor() as cur:
                cur.execute("INSERT INTO failover_drill (n) VALUES (%s)", (n,))
            db.commit()
        except Exception as exc:
            log.write(f"# stopped at {n}: {exc!r}\n"); break
        log.write(f"{n}\n"); log.flush(); os.fsync(log.fileno())
"""

PROBER = r"""
import sys, time, pymysql
password, out = sys.argv[1], sys.argv[2]
while True:
    try:
        db = pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="foobar", password=password,
                             database="foobar", connect_timeout=2)
        with db.cursor() as cur:
            cur.execute("INSERT INTO failover_drill (n) VALUES (-1)")
        db.commit()
        open(out, "w").write(repr(time.time())); break
    except Exception:
        time.sleep(0.1)
"""


def subprocess_run(cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=check)


def swapped_inventory(tmp_path, new_primary, old_primary):
    """A copy of the scenario's inventory after the runbook's edit: the groups swapped."""
    source = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    target = tmp_path / "inventory"
    shutil.copytree(source, target, symlinks=True)
    path = target / Path(os.environ["MOLECULE_INVENTORY_FILE"]).name
    data = yaml.safe_load(path.read_text())
    groups = data["all"].get("children") or data  # molecule writes the groups at the top level
    groups["db_primary"]["hosts"] = {new_primary: groups["db_replica"]["hosts"].pop(new_primary)}
    groups["db_replica"]["hosts"][old_primary] = None
    path.write_text(yaml.safe_dump(data))
    return target


@pytest.mark.drill(last=True)
def test_failover_drill_loses_no_committed_write(host, tmp_path):
    """Kill the primary's container mid-stream, fail over, check every acknowledged write; the
    old primary comes back as a replica seeded from the newest backup of its version."""
    writer = get(REPLICAS[0])
    password = secret("mysql_app_password")
    sql(host, "CREATE TABLE IF NOT EXISTS failover_drill (id INT AUTO_INCREMENT PRIMARY KEY, n INT)", DB)
    sql(host, "CREATE TABLE IF NOT EXISTS probe (id INT AUTO_INCREMENT PRIMARY KEY, token VARCHAR(64))", DB)
    # Which replica the runbook promotes is its choice (the most advanced, then the oldest
    # server): each one runs a prober that writes as soon as its server takes writes.
    for name in REPLICAS:
        get(name).run_test(f"cat > /tmp/writer.py <<'EOF'\n{WRITER}\nEOF\ncat > /tmp/prober.py <<'EOF'\n{PROBER}\nEOF"
                           "\nrm -f /tmp/acked /tmp/first-write")
    writer.run_test(f"setsid -f python3 /tmp/writer.py {address(PRIMARY)} {password} /tmp/acked > /tmp/writer.err 2>&1 < /dev/null")
    deadline = time.time() + 30
    while time.time() < deadline and int(writer.run("grep -c '^[0-9]' /tmp/acked").stdout.strip() or 0) < 200:
        time.sleep(0.2)
    killed_at = time.time()
    for name in REPLICAS:
        get(name).run_test(f"setsid -f python3 /tmp/prober.py {password} /tmp/first-write > /dev/null 2>&1 < /dev/null")
    subprocess_run(["docker", "kill", container(PRIMARY)])

    run = playbook(path="playbooks/db-failover.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    promoted = re.findall(r"([\w.-]+) is the primary now", run.stdout)
    assert promoted and promoted[0] in REPLICAS, run.stdout[-3000:]
    new_name, new_primary = promoted[0], get(promoted[0])
    for name in set(REPLICAS) - {new_name}:  # the probers of replicas left as replicas never write
        get(name).run("pkill -f '[p]rober.py'")
    deadline = time.time() + 60
    while time.time() < deadline and not new_primary.file("/tmp/first-write").exists:
        time.sleep(0.2)
    first_write = float(new_primary.file("/tmp/first-write").content_string)

    acked = [int(line) for line in writer.file("/tmp/acked").content_string.splitlines() if line[:1].isdigit()]
    present = {int(row[0]) for row in sql(new_primary, "SELECT n FROM failover_drill WHERE n > 0", DB)}
    assert len(acked) >= 200
    missing = sorted(set(acked) - present)
    assert not missing, f"acknowledged writes lost: {missing[:20]}"
    assert sql(new_primary, "SELECT @@global.read_only") == [["0"]]
    # The binary log archive (roles/backup) follows the new primary by itself: it switches to it,
    # and a row written now reaches its folder of the new primary's binary logs on the backup
    # host, unless the backup host's client is older than the new primary's server (the lab's
    # Debian 12 monitor host and Debian 13 web-02), which mariadb-binlog refuses: then the
    # archive must say so (README, "Backups and restores").
    store = get(names_of("backups")[0])
    token = f"archived-{time.time_ns()}"
    sql(new_primary, f"INSERT INTO probe (token) VALUES ('{token}')", DB)
    folder = f"{site_setting('backup_store_dir')}/binlog/{new_name}"
    journal = "journalctl -u infra-binlog-archive --no-pager -o cat --since=-10min"
    deadline, followed_at, archived_at = time.time() + 150, None, None
    with store.sudo():
        def major_minor(text):
            return [int(x) for x in re.search(r"([0-9]+)[.]([0-9]+)[.][0-9]+-MariaDB", text).groups()]
        older = major_minor(store.check_output("mariadb --version")) < major_minor(
            sql(new_primary, "SELECT @@version")[0][0])
        while time.time() < deadline and archived_at is None:
            log = store.check_output(journal)
            if followed_at is None and f"archiving the binary logs of {new_name}" in log:
                followed_at = time.time()
            if store.run(f"grep -a -l -s {token} {folder}/*").rc == 0:
                archived_at = time.time()
            if older and followed_at and "unrecognized MariaDB version" in log:
                break
            time.sleep(1)
        assert followed_at, "the archive did not switch to the new primary: " + store.check_output(journal)[-1500:]
        assert archived_at or older, f"the archive did not receive {token}: " + store.check_output(journal)[-1500:]
    figure = {"promoted": new_name, "acknowledged_writes": len(acked), "lost": len(missing),
              "kill_to_first_accepted_write_s": round(first_write - killed_at, 2),
              "kill_to_archive_following_new_primary_s": round(followed_at - killed_at, 1),
              "archive_holds_new_primarys_writes": bool(archived_at)}
    record_drill("database primary killed under committed writes, then the failover runbook", figure)
    slowest = run.stdout.split("TASKS RECAP")[-1].splitlines()[3:9]
    print(f"\nfailover drill: {json.dumps(figure)}\nslowest failover tasks:\n" + "\n".join(slowest))

    # The old primary comes back; after the runbook's inventory edit, a converge makes it a
    # replica, seeded from the newest backup of its server version (the backups hold one: the
    # backup drills ran before), the new primary never dumped.
    subprocess_run(["docker", "start", container(PRIMARY)])
    subprocess_run(["docker", "exec", container(PRIMARY), "sh", "-c",
                    "for i in $(seq 60); do systemctl is-system-running --quiet --wait && exit 0; sleep 1; done"],
                   check=False)
    inventory = swapped_inventory(tmp_path, new_name, PRIMARY)
    rejoin = playbook("--tags", "db", inventory=inventory)
    assert rejoin.returncode == 0, rejoin.stdout[-3000:]
    said = " ".join(rejoin.stdout.split())
    assert f"Seeding {PRIMARY} from backup" in said, said[-3000:]
    assert "Dump the primary's databases" not in said, said[-3000:]
    old = get(PRIMARY)
    state = replica_status(old)
    assert state["Master_Host"] == address(new_name), state
    assert state["Slave_IO_Running"] == "Yes" and state["Slave_SQL_Running"] == "Yes", state
    # Seeded from a backup taken drills ago, it fetches every transaction since from the new
    # primary's binary logs: it must reach the new primary's position (however long the backlog,
    # reported), then a new row must reach it within seconds.
    target = sql(new_primary, "SELECT @@global.gtid_binlog_pos")[0][0]
    started = time.time()
    reached = sql(old, f"SELECT MASTER_GTID_WAIT('{target}', 600)")
    catch_up_s = round(time.time() - started, 1)
    assert reached == [["0"]], f"{PRIMARY} did not reach GTID {target} in 600 s: {replica_status(old)}"
    token = f"after-{time.time_ns()}"
    sql(new_primary, f"INSERT INTO probe (token) VALUES ('{token}')", DB)
    assert wait_for_row(old, f"SELECT token FROM {DB}.probe WHERE token='{token}'", [[token]]) == [[token]], \
        replica_status(old)
    print(f"rejoin: {PRIMARY} seeded from a backup, caught up with {new_name} ({target}) in {catch_up_s} s")
    assert status(new_primary, "Rpl_semi_sync_master_status") == "ON"
    again = playbook("--tags", "db", inventory=inventory)
    assert again.returncode == 0 and recap(again)[PRIMARY] == 0, again.stdout[-3000:]

