"""action_plugins/infra_files.py: the items checked, the host read in one call, what differs.

The host's side (READ) runs here on real files in a temporary folder, as it runs on a server:
its answer and check_items' items go through differences(), as in the action."""

import grp
import json
import os
import pwd
import subprocess
import sys

import pytest
from ansible.errors import AnsibleActionFail

from infra_files import READ, check_items, differences, purge_arguments, stale

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def read(*paths):
    """What READ says of these paths, run as on a host."""
    out = subprocess.run([sys.executable, "-c", READ, *map(str, paths)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def item(path, **fields):
    return dict({"dest": str(path), "content": "a = 1\n", "owner": ME, "group": MY_GROUP, "mode": "0644"}, **fields)


def differ(wanted):
    [want] = check_items([wanted])
    return differences(want, read(want["dest"])[want["dest"]])


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "app.conf"
    path.write_text("a = 1\n")
    path.chmod(0o644)
    return path


def test_a_file_as_wanted_differs_in_nothing(conf):
    assert differ(item(conf)) == []


def test_a_hand_edit_an_opened_mode_and_another_owner_are_each_seen(conf):
    conf.write_text("a = 1\n# edited by hand\n")
    assert differ(item(conf)) == ["content"]
    conf.write_text("a = 1\n")
    conf.chmod(0o666)
    assert differ(item(conf)) == ["mode"]
    assert differ(item(conf, mode="0666", owner="nobody-else")) == ["owner"]
    assert differ(item(conf, mode="0666", group="no-such-group")) == ["group"]


def test_a_missing_file_a_directory_in_its_place_and_a_file_to_remove(tmp_path, conf):
    assert differ(item(tmp_path / "missing.conf")) == ["state"]
    (tmp_path / "dir.conf").mkdir()
    assert differ(item(tmp_path / "dir.conf")) == ["state"]
    assert differ({"dest": str(conf), "state": "absent"}) == ["state"]
    assert differ({"dest": str(tmp_path / "missing.conf"), "state": "absent"}) == []


def test_a_directory_and_its_mode(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    folder.chmod(0o755)
    wanted = {"dest": str(folder), "state": "directory", "owner": ME, "group": MY_GROUP, "mode": "755"}
    assert differ(wanted) == []
    assert differ(dict(wanted, mode="0700")) == ["mode"]


def test_one_read_answers_for_every_path(tmp_path, conf):
    found = read(conf, tmp_path, tmp_path / "missing")
    assert found[str(conf)]["state"] == "file" and found[str(conf)]["mode"] == "0644"
    assert found[str(tmp_path)]["state"] == "directory"
    assert found[str(tmp_path / "missing")] == {"state": "absent"}


def test_content_with_non_ascii_text_compares_by_its_utf8_bytes(tmp_path):
    path = tmp_path / "index.html"
    path.write_bytes("<p>Servi par web-01 – ça marche</p>\n".encode())
    path.chmod(0o644)
    assert differ(item(path, content="<p>Servi par web-01 – ça marche</p>\n")) == []


@pytest.mark.parametrize("files, says", [
    ([], "files must be a non-empty list"),
    ("x", "files must be a non-empty list"),
    (["x"], "files[0] must be a mapping"),
    ([{"dest": "etc/x", "content": ""}], "files[0].dest: expected an absolute path"),
    ([{"dest": "/etc/x/", "content": ""}], "files[0].dest: expected an absolute path"),
    ([{"dest": "/etc/x", "content": "", "owner": "root", "group": "root", "mode": "0644", "src": "x.j2"}],
     "files[0]: unknown field(s) src"),
    ([{"dest": "/etc/x", "owner": "root", "group": "root", "mode": "0644"}], "(/etc/x): a file needs its content or its template"),
    ([{"dest": "/etc/x", "content": "", "template": "x.j2", "owner": "root", "group": "root", "mode": "0644"}],
     "(/etc/x): a file needs its content or its template, one of them"),
    ([{"dest": "/etc/x", "template": ["x.j2"], "owner": "root", "group": "root", "mode": "0644"}],
     "(/etc/x).template: expected a string, got list"),
    ([{"dest": "/etc/x", "template": "", "owner": "root", "group": "root", "mode": "0644"}],
     "(/etc/x).template: expected a template's file name"),
    ([{"dest": "/etc/x", "content": 3, "owner": "root", "group": "root", "mode": "0644"}],
     "(/etc/x).content: expected a string, got int"),
    ([{"dest": "/etc/x", "content": "", "group": "root", "mode": "0644"}], "(/etc/x).owner: required"),
    ([{"dest": "/etc/x", "content": "", "owner": "root", "group": "root", "mode": "u=rw"}],
     "(/etc/x).mode: expected an octal mode"),
    ([{"dest": "/etc/x", "content": "", "owner": "root", "group": "root", "mode": "0844"}],
     "(/etc/x).mode: expected an octal mode"),
    ([{"dest": "/etc/x", "state": "link"}], "(/etc/x).state: expected one of file, directory, absent"),
    ([{"dest": "/etc/x", "state": "directory", "content": "", "owner": "root", "group": "root", "mode": "0755"}],
     "(/etc/x): content, template and validate are for files only"),
    ([{"dest": "/etc/x", "state": "absent", "template": "x.j2"}], "(/etc/x): content, template and validate are for files only"),
    ([{"dest": "/etc/x", "state": "absent"}, {"dest": "/etc/x", "state": "absent"}], "files[1] (/etc/x).dest: listed twice"),
    ([{"dest": "/etc/x", "content": "", "owner": "root", "group": "root", "mode": "0644", "purge": "*"}],
     "(/etc/x).purge: for a directory only (state: file)"),
    ([{"dest": "/etc/x", "state": "directory", "owner": "root", "group": "root", "mode": "0755", "purge": "a/*.conf"}],
     "(/etc/x).purge: expected a file name pattern"),
    ([{"dest": "/etc/x", "state": "directory", "owner": "root", "group": "root", "mode": "0755", "purge": ""}],
     "(/etc/x).purge: expected a file name pattern"),
])
def test_bad_items_are_refused_naming_the_item_and_the_field(files, says):
    with pytest.raises(AnsibleActionFail, match=None) as error:
        check_items(files)
    assert says in str(error.value)
    assert str(error.value).startswith("infra_files: ")


def test_modes_are_compared_as_numbers():
    [want] = check_items([{"dest": "/etc/x", "content": "", "owner": "root", "group": "root", "mode": "644"}])
    assert want["mode"] == "0644" and want["state"] == "file"


def test_numeric_owner_and_group_compare_with_the_ids(conf):
    """An item may give ids (an account whose group is known by number): compared as numbers."""
    assert differ(item(conf, owner=str(os.getuid()), group=str(os.getgid()))) == []
    assert differ(item(conf, owner=str(os.getuid() + 1), group=str(os.getgid()))) == ["owner"]
    assert differ(item(conf, owner=ME, group=str(os.getgid() + 1))) == ["group"]


def test_a_purged_directory_loses_the_files_of_its_pattern_that_no_item_lists(tmp_path):
    """READ lists the directory's entries of the pattern (files and links, not directories);
    those the task lists stay, the others are stale; other names and other directories are
    not touched."""
    confd = tmp_path / "conf.d"
    confd.mkdir()
    for name in ("infra-sources.yaml", "infra-old.yaml", "infra-by-hand.yaml", "vendor.yaml"):
        (confd / name).write_text("x: 1\n")
    (confd / "infra-dir.yaml").mkdir()
    (confd / "infra-link.yaml").symlink_to(confd / "vendor.yaml")
    items = check_items([
        {"dest": str(confd), "state": "directory", "owner": ME, "group": MY_GROUP, "mode": "0755",
         "purge": "infra-*.yaml"},
        item(confd / "infra-sources.yaml", content="x: 1\n"),
        item(tmp_path / "elsewhere" / "infra-else.yaml"),
    ])
    have = read(*[i["dest"] for i in items], *purge_arguments(items))
    assert stale(items, have) == [str(confd / name) for name in ("infra-by-hand.yaml", "infra-link.yaml", "infra-old.yaml")]
    assert differences(items[0], have[str(confd)]) == []


def test_a_purged_directory_not_there_yet_has_nothing_stale(tmp_path):
    items = check_items([{"dest": str(tmp_path / "new"), "state": "directory", "owner": ME, "group": MY_GROUP,
                          "mode": "0755", "purge": "*.conf"}])
    have = read(*[i["dest"] for i in items], *purge_arguments(items))
    assert stale(items, have) == []
    assert differences(items[0], have[str(tmp_path / "new")]) == ["state"]
