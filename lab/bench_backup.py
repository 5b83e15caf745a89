"""`make bench`'s database backup figures (lab/bench.py calls measure() on its converged lab).

In one run, on the same generated data (at least 1 GB of rows by default, written to the
primary, replicated to its replicas, archived by the binary log archive):

1. the load itself, with the binary log archive's lag sampled every half second (bytes the
   primary wrote that the archive does not hold, and how long ago the primary wrote what the
   archive holds) and the seconds it needs to catch up once the load ends;
2. a physical backup, the role's own script started as its timer does (and timed on its own),
   then as `playbooks/db-backup.yml` runs it, with its size compressed and encrypted;
3. a restore of the latest state with `playbooks/db-restore.yml` (the controller decrypts:
   it needs `age`), its time by role (backup: the primary restored; mysql: the replicas
   reseeded) and its slowest tasks beside it;
4. side by side, the logical way: `mariadb-dump --single-transaction | zstd` of the same data
   on the primary, and its reload into a new database.

The hosts are the inventory's: the first of db_primary and of backups; the source of the
backups is the database host whose timer is enabled.
"""

import re
import shlex
import shutil
import threading
import time
from pathlib import Path

import yaml
from bench_report import BenchError, archive_lag, binlog_total, role_times

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "bench_backup"
ROW_BYTES = 1100  # what one generated row takes in InnoDB, about: its 1 KiB payload and the rest
BATCH_ROWS = 20000  # rows per transaction
SAMPLE_EVERY = 0.5  # seconds between two samples of the archive's lag
PROM = "/var/lib/prometheus/node-exporter/infra_db_backup.prom"


def role_default(name, hostvars):
    """A backup setting: the inventory's value, else roles/backup's default."""
    if name in hostvars:
        return hostvars[name]
    return yaml.safe_load((ROOT / "roles" / "backup" / "defaults" / "main.yml").read_text())[name]


def payload_sql():
    """SQL of a generated row's payload: 1 KiB of hex digests of its number, none shared with
    another row (compresses about as well as text does, unlike random bytes or a repeated string)."""
    return "CONCAT(" + ", ".join(f"SHA2(CONCAT(seq, '/{i}'), 512)" for i in range(8)) + ")"


class Lab:
    """The bench lab's database side: SQL and commands on its hosts (through docker exec)."""

    def __init__(self, exec_on, primary, store_host, store_dir):
        self.exec_on, self.primary, self.store_host = exec_on, primary, store_host
        self.archive = f"{store_dir}/binlog/{primary}"

    def sql(self, query):
        """Rows of a query run as root on the primary (its local socket)."""
        _, out = self.exec_on(self.primary, f"mariadb -N -B -e {shlex.quote(query)}")
        return [line.split("\t") for line in out.splitlines()]

    def binlogs(self):
        """The primary's binary logs: {file: bytes written}."""
        return {row[0]: int(row[1]) for row in self.sql("SHOW BINARY LOGS")}

    def archived(self):
        """The archive's copy of the primary's binary logs: {file: bytes held}."""
        _, out = self.exec_on(self.store_host, f"stat -c '%n %s' {self.archive}/* 2>/dev/null || true")
        return {Path(name).name: int(size) for name, size in (line.rsplit(" ", 1) for line in out.splitlines())}


def sample_lag(lab, first, stop, samples, started):
    """Append (seconds, primary's bytes, archive's bytes) every SAMPLE_EVERY until ``stop`` is set."""
    while not stop.is_set():
        written = binlog_total(lab.binlogs(), first)
        held = binlog_total(lab.archived(), first)
        samples.append((time.monotonic() - started, written, held))
        stop.wait(SAMPLE_EVERY)


def load(lab, rows):
    """Write ``rows`` generated rows in transactions of BATCH_ROWS while sampling the archive's
    lag; then wait until the archive holds everything. The load's figures and the lag's."""
    lab.sql(f"DROP DATABASE IF EXISTS {DATABASE}; CREATE DATABASE {DATABASE}; "
            f"CREATE TABLE {DATABASE}.t (id BIGINT PRIMARY KEY, k INT NOT NULL, created DATETIME NOT NULL, "
            "payload VARCHAR(1100) NOT NULL, KEY (k)) ENGINE=InnoDB")
    lab.sql("FLUSH BINARY LOGS")
    first = max(lab.binlogs())
    samples, stop, started = [], threading.Event(), time.monotonic()
    sampler = threading.Thread(target=sample_lag, args=(lab, first, stop, samples, started), daemon=True)
    sampler.start()
    try:
        for low in range(1, rows + 1, BATCH_ROWS):
            high = min(rows, low + BATCH_ROWS - 1)
            lab.sql(f"INSERT INTO {DATABASE}.t SELECT seq, seq % 1000, NOW() - INTERVAL seq SECOND, {payload_sql()} "
                    f"FROM {DATABASE}.seq_{low}_to_{high}")
        loaded = time.monotonic() - started
        deadline = time.monotonic() + 300
        while not samples or samples[-1][0] < loaded or samples[-1][2] < samples[-1][1]:
            if time.monotonic() > deadline:
                raise BenchError(f"the binary log archive did not catch up within 300 s: {samples[-1:]}")
            time.sleep(SAMPLE_EVERY)
    finally:
        stop.set()
        sampler.join()
    caught_up = next(when for when, written, held in samples if when >= loaded and held >= written)
    during = [s for s in samples if s[0] <= loaded]
    lag = dict(archive_lag(during), catch_up_s=round(caught_up - loaded, 1))
    return {"seconds": round(loaded, 1), "binlog_bytes": binlog_total(lab.binlogs(), first)}, lag


def backup_source(lab, db_hosts):
    """The database host whose backup timer is enabled (the role enables exactly one)."""
    enabled = [h for h in db_hosts
               if lab.exec_on(h, "systemctl is-enabled infra-db-backup.timer || true")[1].strip() == "enabled"]
    if len(enabled) != 1:
        raise BenchError(f"the backup timer must be enabled on exactly one database host, is on {enabled}")
    return enabled[0]


def metrics(lab, host, *names):
    """Figures of the backup script's textfile metrics on a host, read once: {name: value}."""
    _, out = lab.exec_on(host, f"cat {PROM}")
    found = dict(re.findall(r"^(\w+) (\S+)$", out, re.M))
    missing = [name for name in names if name not in found]
    if missing:
        raise BenchError(f"{host}:{PROM} has no {', '.join(missing)}")
    return {name: float(found[name]) for name in names}


def slowest_tasks(out, count=6):
    """The ``count`` slowest tasks of a playbook run (ansible.posix.profile_tasks' recap)."""
    recap = out.rpartition("TASKS RECAP")[2]
    tasks = re.findall(r"^(.+?) -+ (\d+\.\d+)s$", recap, re.M)
    return {name.split(" : ", 1)[-1].strip(): float(took) for name, took in tasks[:count]}


def measure(topo, hostvars, exec_on, playbook, size_bytes):
    """Every figure of the module docstring, on the converged bench lab. ``exec_on(host, cmd)``
    runs a shell command in a host's container; ``playbook(*args, log=)`` runs a playbook on the
    bench inventory; ``size_bytes``: how much row data to generate."""
    if not shutil.which("age"):
        raise BenchError("the restore decrypts on the controller: install age (Debian's package)")
    if not topo.get("backup_host"):
        raise BenchError("the lab inventory has no host in the group backups")
    lab = Lab(exec_on, topo["db_primary"], topo["backup_host"], role_default("backup_store_dir", hostvars))
    rows = -(-size_bytes // ROW_BYTES)
    figures = {"rows": rows}
    figures["load"], figures["archive_lag"] = load(lab, rows)
    figures["data_bytes"] = int(exec_on(lab.primary, f"du -sb /var/lib/mysql/{DATABASE} | cut -f1")[1])
    figures["datadir_bytes"] = int(exec_on(lab.primary, "du -sb /var/lib/mysql | cut -f1")[1])

    source = backup_source(lab, topo["db_hosts"])
    took, _ = exec_on(source, "systemctl start infra-db-backup.service")
    written = metrics(lab, source, "infra_db_backup_last_run_duration_seconds",
                      "infra_db_backup_last_success_size_bytes")
    figures["backup"] = {"seconds": round(took, 1), "host": source,
                         "script_s": written["infra_db_backup_last_run_duration_seconds"],
                         "bytes": int(written["infra_db_backup_last_success_size_bytes"])}
    took, _, _ = playbook("playbooks/db-backup.yml", log="db-backup")
    figures["backup_playbook"] = {"seconds": took}
    took, _, out = playbook("playbooks/db-restore.yml", log="db-restore")
    figures["restore"] = {"seconds": took, "slowest": slowest_tasks(out), "roles": role_times(out)}
    restored = lab.sql(f"SELECT COUNT(*) FROM {DATABASE}.t")[0][0]
    if int(restored) != rows:
        raise BenchError(f"the restore holds {restored} of the {rows} generated rows")

    level = role_default("backup_compress_level", hostvars)
    dump = f"/var/tmp/{DATABASE}.sql.zst"
    took, _ = exec_on(lab.primary, f"set -o pipefail; mariadb-dump --single-transaction --quick {DATABASE} "
                                   f"| zstd -q -T0 -{level} > {dump}")
    figures["dump"] = {"seconds": round(took, 1), "bytes": int(exec_on(lab.primary, f"stat -c %s {dump}")[1])}
    lab.sql(f"DROP DATABASE IF EXISTS {DATABASE}_reload; CREATE DATABASE {DATABASE}_reload")
    took, _ = exec_on(lab.primary, f"set -o pipefail; zstd -dc {dump} | mariadb {DATABASE}_reload")
    figures["reload"] = {"seconds": round(took, 1)}
    exec_on(lab.primary, f"rm -f {dump}")
    lab.sql(f"DROP DATABASE {DATABASE}_reload; DROP DATABASE {DATABASE}")
    return figures
