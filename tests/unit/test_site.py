"""site.yml's preflight reads which roles run where from the plays themselves (filter
infra_site_roles): a role added to a play is validated and its packages collected with no
second list to keep. These tests hold the plays to what the filter reads, and the filter to them.
"""

import configparser
import re
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "filter_plugins"))
from site_roles import infra_site_roles  # noqa: E402  pylint: disable=wrong-import-position

SITE = yaml.safe_load((ROOT / "site.yml").read_text())


def played_roles():
    """{role: host pattern} from the plays that run roles."""
    found = {}
    for play in SITE:
        imported = [t["ansible.builtin.import_role"] for t in play.get("tasks", []) if "ansible.builtin.import_role" in t]
        for entry in play.get("roles", []) + imported:
            role = entry.get("role", entry.get("name")) if isinstance(entry, dict) else entry
            assert role not in found, f"role {role} runs in two plays"
            found[role] = play["hosts"]
    return found


def test_each_group_gets_the_roles_of_its_plays_in_play_order():
    assert infra_site_roles(SITE, ["loadbalancers", "servers"]) == [
        "common", "firewall", "pki", "haproxy", "keepalived", "exporters", "sumologic", "rsyslog", "certbot"]
    assert infra_site_roles(SITE, ["db_replica", "webservers", "servers"]) == [
        "common", "firewall", "pki", "mysql", "nginx", "exporters", "sumologic", "rsyslog", "backup"]
    assert infra_site_roles(SITE, ["backups", "monitoring"]) == []


def test_every_played_role_is_read_for_some_group():
    groups = {part for pattern in played_roles().values() for part in pattern.split(":")}
    assert set(infra_site_roles(SITE, sorted(groups))) == set(played_roles())


@pytest.mark.parametrize("plays, message", [
    ([{"name": "web", "hosts": "webservers:!db_primary", "roles": ["nginx"]}], "play 1 ('web'): hosts 'webservers:!db_primary'"),
    ([{"name": "web", "hosts": "web*", "roles": ["nginx"]}], "must be a union of groups"),
    ([{"name": "web", "hosts": "webservers", "roles": [{"tags": ["x"]}]}], "a role entry names no role"),
    ([{"name": "web", "roles": ["nginx"]}], "hosts must be a host pattern"),
    ({"hosts": "all"}, "a list of plays"),
])
def test_a_play_the_preflight_cannot_read_is_named(plays, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        infra_site_roles(plays, ["webservers"])


def test_import_role_tasks_are_a_plays_roles_and_include_role_tasks_are_not():
    plays = [{"hosts": "servers", "tasks": [{"ansible.builtin.include_role": {"name": "{{ item }}"}}]},
             {"hosts": "a", "tasks": [{"name": "x", "ansible.builtin.import_role": {"name": "x", "rolespec_validate": False}},
                                      {"import_role": {"name": "y"}}, {"ansible.builtin.debug": {"msg": "z"}}]},
             {"hosts": "a", "roles": ["w"], "tasks": [{"ansible.builtin.import_role": {"name": "v"}}]}]
    assert infra_site_roles(plays, ["a", "servers"]) == ["x", "y", "w", "v"]
    with pytest.raises(AnsibleFilterError, match="names no role"):
        infra_site_roles([{"hosts": "a", "tasks": [{"ansible.builtin.import_role": {"tasks_from": "x"}}]}], ["a"])


def test_site_imports_its_roles_without_a_second_argument_spec_pass():
    for play in SITE:
        for task in play.get("tasks", []):
            if "ansible.builtin.import_role" in task:
                assert task["ansible.builtin.import_role"].get("rolespec_validate") is False, task


@pytest.mark.parametrize("role", sorted(played_roles()))
def test_site_imports_the_roles_work_past_their_own_check_and_install(role):
    """A role whose tasks/main.yml checks its variables (and installs its packages) before its
    work, tasks/run.yml, is imported by site.yml at run.yml: the preflight has done both, and a
    skipped include per role and host is what importing main.yml would cost. main.yml is that
    one include, then run.yml, so a role run alone still does both."""
    tasks = ROOT / "roles" / role / "tasks"
    imported = [t["ansible.builtin.import_role"] for play in SITE for t in play.get("tasks", [])
                if t.get("ansible.builtin.import_role", {}).get("name") == role][0]
    if not (tasks / "run.yml").exists():
        assert "tasks_from" not in imported, f"{role}: site.yml imports {imported['tasks_from']}, a file it lacks"
        return
    assert imported.get("tasks_from") == "run", f"{role}: site.yml must import tasks/run.yml, past the role's check"
    main = yaml.safe_load((tasks / "main.yml").read_text())
    assert len(main) == 2, f"{role}: tasks/main.yml must be the check's include, then run.yml"
    check, work = main
    assert check["ansible.builtin.include_tasks"] in ("validate.yml", "prepare.yml"), check
    assert "role_name not in infra_roles_checked" in str(check["when"]), check
    assert work == {"name": "The role's work", "ansible.builtin.import_tasks": "run.yml"}, work


def test_a_run_without_the_common_role_installs_the_roles_packages_itself():
    """The roles' own install tasks are not in site.yml's runs (tasks/run.yml): where the common
    role's one transaction does not run, the preflight play installs the run's roles' packages."""
    preflight = [p for p in SITE if "infra_site_plays" in p.get("vars", {})][0]
    install = [t for t in preflight["tasks"] if "infra_packages" in t]
    assert len(install) == 1, "the preflight play must install the packages once"
    assert install[0]["infra_packages"]["name"] == "{{ infra_role_packages }}"
    assert "'common' not in infra_roles_this_run" in install[0]["when"]
    assert install[0].get("become") is True
    common = yaml.safe_load((ROOT / "roles/common/defaults/main.yml").read_text())
    assert "infra_role_packages" in common["common_role_packages"], "the common role must install the same list"


def test_templated_patterns_and_plays_without_roles_are_left_out():
    plays = [{"hosts": "servers", "tasks": []}, {"hosts": "{{ backup_host_group }}", "roles": ["backup"]},
             {"hosts": "a:b", "roles": [{"role": "x"}, "y", "x"]}]
    assert infra_site_roles(plays, ["b", "servers"]) == ["x", "y"]


@pytest.mark.parametrize("role", sorted(played_roles()))
def test_every_role_has_the_preflight_contract(role):
    tasks = ROOT / "roles" / role / "tasks"
    validate = yaml.safe_load((tasks / "validate.yml").read_text())
    checks = [task for task in validate if "infra_check_vars" in task and task.get("register") == f"{role}_vars_checked"]
    assert len(checks) == 1, f"{role}: tasks/validate.yml must register {role}_vars_checked from one infra_check_vars task"
    assert "packages" in checks[0]["infra_check_vars"], f"{role}: its check must return the role's packages"


@pytest.mark.parametrize("inventory", sorted(p.name for p in (ROOT / "inventory").iterdir() if p.is_dir()))
def test_preflight_play_covers_every_host_a_play_configures(inventory):
    """In each shipped inventory, the preflight's hosts include every host of every play."""
    from ansible.inventory.manager import InventoryManager  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel

    manager = InventoryManager(loader=DataLoader(), sources=[str(ROOT / "inventory" / inventory)])
    preflight = [p for p in SITE if "infra_site_plays" in p.get("vars", {})][0]
    checked = {h.name for h in manager.get_hosts(preflight["hosts"])}
    for role, pattern in played_roles().items():
        configured = {h.name for h in manager.get_hosts(pattern)}
        assert configured, f"{inventory}: no host for role {role} ({pattern})"
        assert configured <= checked, f"{inventory}: role {role} runs on {configured - checked} unchecked"


def test_a_runs_tags_select_the_plays_whose_roles_it_checks():
    lb = ["loadbalancers", "servers"]
    assert infra_site_roles(SITE, lb, ["certs"], []) == ["certbot"]
    assert infra_site_roles(SITE, lb, ["lb", "monitoring"], []) == [
        "haproxy", "keepalived", "exporters", "sumologic", "rsyslog"]
    assert infra_site_roles(SITE, lb, ["all"], ["certs", "monitoring"]) == [
        "common", "firewall", "pki", "haproxy", "keepalived"]
    assert infra_site_roles(SITE, lb, ["all"], []) == infra_site_roles(SITE, lb)
    assert infra_site_roles(SITE, lb, ["tagged"], []) == infra_site_roles(SITE, lb)
    assert infra_site_roles(SITE, lb, ["untagged"], []) == []
    assert infra_site_roles(SITE, lb, ["preflight"], []) == []


@pytest.mark.parametrize("play, run, skip, runs", [
    ({"tags": "x"}, ["x"], [], True),
    ({"tags": ["always"]}, ["y"], [], True),
    ({"tags": ["always"]}, ["y"], ["always"], False),
    ({"tags": ["never", "x"]}, ["all"], [], False),
    ({"tags": ["never", "x"]}, ["x"], [], True),
    ({}, ["untagged"], [], True),
    ({}, ["all"], [], True),
    ({"tags": ["x"]}, None, ["x"], False),
])
def test_ansibles_tag_rules(play, run, skip, runs):
    plays = [dict(play, hosts="g", roles=["r"])]
    assert infra_site_roles(plays, ["g"], run, skip) == (["r"] if runs else [])


def test_tags_that_are_no_list_are_named():
    with pytest.raises(AnsibleFilterError, match="run_tags must be a list of tags"):
        infra_site_roles(SITE, ["servers"], "certs")


# The facts site.yml's plays gather: a subset (every task and host decodes the facts from the
# fact cache, so their size is paid at each task). Every fact the project reads must be in it:
# one outside would be undefined, or a default silently taken. The names are those a lab server
# gathered (fixtures/fact_names.json); the playbooks share the fact cache (gathering = smart),
# so they are held to the same subset.
FACT_NAMES = yaml.safe_load((ROOT / "tests" / "unit" / "fixtures" / "fact_names.json").read_text())
FACT_REFERENCE = re.compile(r"ansible_facts(?:\[\s*['\"](\w+)['\"]\s*\]|\.(\w+))|\b(ansible_\w+)")


def test_every_play_that_gathers_facts_gathers_the_same_subset():
    # The subset the fixture's names were gathered with: change one, gather the other again.
    subsets = {str(play.get("gather_subset")) for play in SITE if play.get("gather_facts", True)}
    assert subsets == {str(FACT_NAMES["subset"])}, subsets


def test_every_fact_the_project_reads_is_in_the_subset_site_yml_gathers():
    gathered, known = set(FACT_NAMES["site"]), set(FACT_NAMES["all"])
    read = {}
    for pattern in ("roles/**/*.yml", "roles/**/*.j2", "playbooks/*.yml", "site.yml", "molecule/**/*.yml"):
        for path in ROOT.glob(pattern):
            for match in FACT_REFERENCE.finditer(path.read_text(encoding="utf-8")):
                name = match.group(3) or f"ansible_{match.group(1) or match.group(2)}"
                read.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    facts_read = {name for name in read if name in known}
    # The scan finds what it must (the release, the container check, the interface): it can fail.
    assert {"ansible_distribution_release", "ansible_virtualization_type", "ansible_default_ipv4"} <= facts_read
    missing = {name: sorted(read[name]) for name in facts_read - gathered}
    assert not missing, f"facts read but not gathered by site.yml's gather_subset: {missing}"


def test_no_fact_is_read_as_a_top_level_variable():
    """ansible.cfg and the scenarios turn inject_facts_as_vars off (README, "Speed"): a fact read
    as ansible_<name> would be undefined there. Every fact is read as ansible_facts['name']."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    assert cfg["defaults"].getboolean("inject_facts_as_vars") is False
    molecule = yaml.safe_load((ROOT / ".config" / "molecule" / "config.yml").read_text())
    assert molecule["provisioner"]["config_options"]["defaults"]["inject_facts_as_vars"] is False
    # ansible_local is always a variable too; the others are facts only.
    facts = set(FACT_NAMES["all"]) - {"ansible_local"}
    bare = {}
    for pattern in ("roles/**/*.yml", "roles/**/*.j2", "playbooks/*.yml", "site.yml", "molecule/**/*.yml",
                    "lab/*.yml", "inventory/**/*.yml"):
        for path in ROOT.glob(pattern):
            for match in FACT_REFERENCE.finditer(path.read_text(encoding="utf-8")):
                if match.group(3) in facts:
                    bare.setdefault(match.group(3), set()).add(str(path.relative_to(ROOT)))
    assert not bare, f"facts read as top-level variables: {bare}"
