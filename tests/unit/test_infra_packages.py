"""action_plugins/infra_packages.py: the arguments checked, dpkg's answer read.

READ runs here through sh against this machine's own dpkg (a Debian system, as the servers):
a package this machine has counts as installed, a name it has never heard of as missing, and
the lists' age is a number of seconds."""

import subprocess

import pytest
from ansible.errors import AnsibleActionFail

from infra_packages import READ, check_args, read_answer


def test_read_answer_counts_installed_and_held_packages_only():
    out = ("ii  nginx\nhi  mariadb-server\nrc  ufw\nun  iptables-persistent\n"
           "iU  half-configured\nlists-age 120\n")
    names = ["nginx", "mariadb-server", "ufw", "iptables-persistent", "half-configured", "never-heard"]
    missing, age = read_answer(out, names)
    assert missing == ["ufw", "iptables-persistent", "half-configured", "never-heard"]
    assert age == 120


def test_a_name_that_is_not_plain_is_left_to_apt():
    missing, age = read_answer("ii  nginx\n", ["nginx", "nginx=1.22*", "libc6:amd64"])
    assert missing == ["nginx=1.22*", "libc6:amd64"]
    assert age is None


def test_read_runs_against_dpkg():
    """The command itself, on this machine's dpkg: dpkg is installed, the other name is not."""
    out = subprocess.run(["sh", "-c", READ.format(names="dpkg no-such-package-here")], check=True,
                         capture_output=True, text=True).stdout
    missing, age = read_answer(out, ["dpkg", "no-such-package-here"])
    assert missing == ["no-such-package-here"]
    assert age is None or age >= 0


def test_check_args_takes_a_name_or_a_list():
    assert check_args({"name": "nginx"}) == (["nginx"], None, False, True)
    assert check_args({"name": ["a", "b"], "cache_valid_time": "3600", "install_recommends": True}) == (["a", "b"], 3600, True, True)
    assert check_args({"name": "a", "cache_valid_time": 0, "update_cache": False}) == (["a"], 0, False, False)


@pytest.mark.parametrize("args, message", [
    ({}, "name: expected a package name or a non-empty list"),
    ({"name": []}, "name: expected a package name or a non-empty list"),
    ({"name": ["a", ""]}, "name: expected a package name or a non-empty list"),
    ({"name": "a", "state": "absent"}, r"unknown field\(s\) state"),
    ({"name": "a", "cache_valid_time": "soon"}, "cache_valid_time: expected seconds, got 'soon'"),
    ({"name": "a", "cache_valid_time": -1}, "cache_valid_time: expected seconds, got -1"),
    ({"name": "a", "install_recommends": "no"}, "install_recommends: expected true or false, got 'no'"),
    ({"name": "a", "cache_valid_time": 60, "update_cache": "no"}, "update_cache: expected true or false, got 'no'"),
    ({"name": "a", "update_cache": True}, "update_cache: needs cache_valid_time"),
])
def test_check_args_names_the_field(args, message):
    with pytest.raises(AnsibleActionFail, match=message):
        check_args(args)


class FakeTask:
    def __init__(self, args, check_mode=False):
        self.args, self.check_mode = args, check_mode


def run_action(monkeypatch, answer, apt_result, check_mode=False):
    """infra_packages' run() against a host whose dpkg gives `answer` and whose apt module
    returns `apt_result`: (the result, the commands run on the host, the modules called)."""
    from ansible.plugins.action import ActionBase

    import infra_packages as plugin

    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    commands, modules = [], []
    action = plugin.ActionModule.__new__(plugin.ActionModule)
    action._task = FakeTask({"name": ["nginx"], "cache_valid_time": 3600}, check_mode)

    def low_level(cmd, sudoable=False):
        commands.append(cmd)
        return {"rc": 0, "stdout": answer if "dpkg-query" in cmd else ""}

    def module(module_name, module_args, task_vars):
        modules.append((module_name, module_args))
        return dict(apt_result)

    action._low_level_execute_command = low_level
    action._execute_module = module
    return action.run(task_vars={}), commands, modules


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_refresh_is_stamped_so_the_next_task_and_run_do_not_refresh_again(monkeypatch, check_mode):
    # nginx installed, the lists two hours old: apt refreshes them; the refresh is stamped where
    # apt's cache_valid_time reads it (not in a dry run, which refreshed nothing).
    # apt says cache_updated: false for a refresh that found nothing new (the lists' folder kept
    # its time): refreshed all the same.
    result, commands, modules = run_action(monkeypatch, "ii nginx\nlists-age 7200\n",
                                           {"changed": False, "cache_updated": False}, check_mode)
    assert [m[0] for m in modules] == ["ansible.legacy.apt"]
    touched = [c for c in commands if c.startswith("touch ")]
    assert touched == ([] if check_mode else ["touch /var/lib/apt/periodic/update-success-stamp"])
    assert result["lists_age"] == 7200


def test_no_refresh_no_stamp(monkeypatch):
    result, commands, modules = run_action(monkeypatch, "ii nginx\nlists-age 60\n", {})
    assert not modules and not [c for c in commands if c.startswith("touch ")] and result["changed"] is False


def test_a_failed_refresh_is_not_stamped(monkeypatch):
    _, commands, _ = run_action(monkeypatch, "ii nginx\nlists-age 7200\n", {"failed": True, "msg": "no network"})
    assert not [c for c in commands if c.startswith("touch ")]


def test_the_common_roles_apt_hook_writes_the_stamp_this_action_reads():
    """The common role has apt stamp every successful refresh; that stamp is the first this
    action (and apt's cache_valid_time) reads: one file, named in both places."""
    from pathlib import Path

    import yaml

    from infra_packages import STAMPS

    root = Path(__file__).resolve().parents[2]
    files = yaml.safe_load((root / "roles/common/vars/main.yml").read_text())["common_upgrades_files"]
    hook = next(f for f in files if f["dest"] == "/etc/apt/apt.conf.d/15update-stamp")
    assert f'"touch {STAMPS[0]} ' in hook["content"]
