"""The backup hosts' receiver (roles/backup/templates/infra-backup-receive.py.j2), rendered and
run as authorized_keys runs it: a database server adds backups and does nothing else, its
description is checked, and retention keeps what a restore needs."""

import calendar
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles" / "backup" / "templates" / "infra-backup-receive.py.j2"


@pytest.fixture(name="store")
def fixture_store(tmp_path):
    """A rendered receiver and an empty store; returns (run, store)."""
    (tmp_path / "store" / "full").mkdir(parents=True)
    (tmp_path / "store" / "binlog").mkdir()
    text = jinja2.Template(TEMPLATE.read_text()).render(
        ansible_managed="test", backup_store_dir=str(tmp_path / "store"), backup_keep_count=2, backup_keep_days=3)
    script = tmp_path / "receive.py"
    script.write_text(text)

    def run(server, command, data=b""):
        env = dict(os.environ, SSH_ORIGINAL_COMMAND=command)
        return subprocess.run([sys.executable, str(script), server], input=data, env=env, capture_output=True,
                              check=False)
    return run, tmp_path / "store"


def name_at(epoch):
    return time.strftime("full-%Y%m%dT%H%M%SZ", time.gmtime(epoch))


def description(name, **changes):
    start = calendar.timegm(time.strptime(name[5:], "%Y%m%dT%H%M%SZ"))
    return json.dumps({"name": name, "source": "web-01", "server_version": "10.11.14-MariaDB-log",
                       "gtid": "0-1-42", "start": start, "end": start + 60, **changes}).encode()


def add(run, server, name, data=b"encrypted bytes"):
    put = run(server, f"put {name}", data)
    assert put.returncode == 0, put.stderr
    commit = run(server, f"commit {name}", description(name))
    assert commit.returncode == 0, commit.stderr
    return json.loads(put.stdout)


def test_a_backup_is_added_with_its_size_and_sha256_and_root_only(store):
    run, root = store
    name = name_at(time.time() - 120)
    put = add(run, "web-01", name, b"x" * 1000)
    assert put["size"] == 1000
    stored = root / "full" / "web-01" / f"{name}.age"
    assert stored.read_bytes() == b"x" * 1000 and stored.stat().st_mode & 0o777 == 0o600
    meta = json.loads((root / "full" / "web-01" / f"{name}.json").read_text())
    assert meta["sha256"] == put["sha256"] and meta["server"] == "web-01"


@pytest.mark.parametrize("command", ["rm -rf /", "cat /etc/shadow", "put ../../etc/passwd", "put full-x",
                                     "commit", "ls", "", "--catalog", "put full-20261202T031500Z extra"])
def test_anything_but_check_put_and_commit_is_refused(store, command):
    run, _root = store
    result = run("web-01", command)
    assert result.returncode == 2 and b"refused" in result.stderr


def test_an_existing_backup_is_never_replaced(store):
    run, root = store
    name = name_at(time.time() - 120)
    add(run, "web-01", name, b"original")
    again = run("web-01", f"put {name}", b"replacement")
    assert again.returncode == 2 and b"exists already" in again.stderr
    assert (root / "full" / "web-01" / f"{name}.age").read_bytes() == b"original"


@pytest.mark.parametrize("changes, says", [
    ({"gtid": "0-1-5;reboot"}, b"is not one"),
    ({"end": "soon"}, b"whole-second start and end"),
    ({"start": 0}, b"follow the backup's name"),
    ({"end": 4102444800}, b"not lie in the future"),
    ({"server_version": "10.11 $(id)"}, b"short plain string"),
])
def test_a_description_a_restore_could_not_trust_is_refused(store, changes, says):
    run, root = store
    name = name_at(time.time() - 120)
    assert run("web-01", f"put {name}", b"data").returncode == 0
    commit = run("web-01", f"commit {name}", description(name, **changes))
    assert commit.returncode == 2 and says in commit.stderr, commit.stderr
    assert not (root / "full" / "web-01" / f"{name}.age").exists()


def test_retention_ranks_every_servers_backups_together_and_prunes_binlogs(store):
    """Keep 2 newest and anything under 3 days: the old source's backups age out too, and the
    binary logs older than the oldest kept backup go (the live folder keeps its newest file)."""
    run, root = store
    now = time.time()
    old = [name_at(now - days * 86400) for days in (10, 9)]
    for name in old:
        add(run, "web-02", name)  # the source before a switchover
    recent = [name_at(now - 3600 * hours) for hours in (5, 2)]
    binlogs = root / "binlog" / "web-01"
    binlogs.mkdir()
    for index, age in enumerate((9 * 86400, 8 * 86400, 60)):
        path = binlogs / f"mysql-bin.{index + 1:06d}"
        path.write_text("events")
        os.utime(path, (now - age, now - age))
    aside = root / "binlog" / "web-01.before-restore-20260101T000000Z"
    aside.mkdir()
    (aside / "mysql-bin.000001").write_text("events")
    os.utime(aside / "mysql-bin.000001", (now - 9 * 86400, now - 9 * 86400))
    for name in recent:
        add(run, "web-01", name)
    left = sorted(p.name for p in (root / "full").rglob("*.age"))
    assert left == sorted(f"{n}.age" for n in recent)
    assert sorted(p.name for p in binlogs.iterdir()) == ["mysql-bin.000003"]
    assert not aside.exists()


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("roles/*/templates/**/*.j2")))
def test_every_role_template_parses(path):
    """A shell `${#array[@]}` is a Jinja comment opening: caught here, not at a converge."""
    jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"]).parse((ROOT / path).read_text())
