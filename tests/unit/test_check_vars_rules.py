"""infra_check_vars' rules and packages, run by the real ansible-playbook on a demo role.

The rules between variables are templated by the plugin itself, after the options' checks,
with each rule's own variables (loop, index, vars): each case below fails if Ansible templated
them first (a loop variable would be undefined) or if the plugin judged them wrongly.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")

SPEC = {"argument_specs": {"validate": {"options": {
    "demo_n": {"type": "int", "description": "A number. [check: int 1..]"},
    "demo_items": {"type": "list", "elements": "dict", "description": "Items. [check: type]"},
}}}}

RULES = [
    {"name": "Below the maximum", "that": "demo_n | int < demo_max", "vars": {"demo_twice": "{{ demo_max * 2 }}"},
     "msg": "demo_n ({{ demo_n }}) must be below {{ demo_max }} (twice: {{ demo_twice }})"},
    {"name": "Each item", "that": ["demo_item.size is defined", "demo_item.size > 0"],
     "loop": "{{ demo_items }}", "loop_var": "demo_item", "index_var": "demo_index",
     "msg": "demo_items[{{ demo_index }}]: size must be positive, got {{ demo_item | to_json }}"},
    {"name": "Never checked", "that": False, "msg": "this rule's when is false", "when": "demo_n == 12345"},
]


def run(tmp_path, rules=None, packages="{{ ['pkg-a'] + (['pkg-b'] if demo_n | int > 1 else []) + ['pkg-a'] }}",
        demo_n=3, sizes=(1, 2), extra_args=None, extra_vars=None):
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True, exist_ok=True)
    (role / "tasks").mkdir(exist_ok=True)
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(SPEC))
    check = {"rules": RULES if rules is None else rules}
    if packages is not None:
        check["packages"] = packages
    check.update(extra_args or {})
    (role / "tasks" / "validate.yml").write_text(yaml.safe_dump([
        {"name": "Check", "infra_check_vars": check, "vars": {"demo_max": 10}, "register": "demo_checked",
         "delegate_to": "localhost"},
        {"name": "Keep the result", "ansible.builtin.copy": {"content": "{{ demo_checked | to_json }}",
                                                              "dest": str(tmp_path / "result.json"), "mode": "0600"}},
    ]))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars": {"demo_n": demo_n, "demo_items": [{"size": size} for size in sizes], **(extra_vars or {})},
        "tasks": [{"ansible.builtin.include_role": {"name": "demo", "tasks_from": "validate", "rolespec_validate": False}}],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(tmp_path / "roles"),
               ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return 0, json.loads((tmp_path / "result.json").read_text())
    return proc.returncode, " ".join(out.split())


def test_rules_that_hold_pass_and_the_packages_come_back_sorted_once(tmp_path):
    rc, result = run(tmp_path)
    assert rc == 0, result
    assert result["packages"] == ["pkg-a", "pkg-b"]
    assert result["msg"] == "Role demo: variables checked"


def test_every_failing_rule_is_named_with_its_loop_index_and_own_variables(tmp_path):
    rc, out = run(tmp_path, demo_n=30, sizes=(1, -2, 3, 0))
    assert rc != 0
    assert "Role demo: 3 variable value(s) refused" in out, out
    assert "demo_n (30) must be below 10 (twice: 20)" in out, out
    assert 'demo_items[1]: size must be positive, got {\\"size\\": -2}' in out, out
    assert 'demo_items[3]: size must be positive, got {\\"size\\": 0}' in out, out
    assert "this rule's when is false" not in out


def test_a_refused_option_stops_before_the_rules_and_the_packages(tmp_path):
    # The rule and the packages would both fail to template with demo_n = 0 (a division by it).
    rules = [{"name": "Divides", "that": "100 // demo_n > 0", "msg": "never shown"}]
    rc, out = run(tmp_path, rules=rules, packages="{{ ['p'] * (100 // demo_n) }}", demo_n=0)
    assert rc != 0
    assert "demo_n: got 0, expected" in out, out
    assert "never shown" not in out and "Divides" not in out and "packages" not in out, out


def test_a_rule_marked_first_is_checked_alone_before_the_options(tmp_path):
    rules = [{"name": "Explains", "first": True, "that": "demo_n | int != 0",
              "msg": "demo_n is 0: it is derived from the other hosts, set it"}]
    rc, out = run(tmp_path, rules=rules, demo_n=0)
    assert rc != 0
    assert "demo_n is 0: it is derived from the other hosts, set it" in out, out
    assert "demo_n: got 0" not in out, out


def test_a_rule_that_cannot_be_evaluated_is_named_unless_an_earlier_one_failed(tmp_path):
    broken = {"name": "Reads a missing item", "that": "demo_items[7].size > 0", "msg": "x"}
    rc, out = run(tmp_path, rules=[broken])
    assert rc != 0
    assert "Reads a missing item:" in out, out
    rc, out = run(tmp_path, rules=[RULES[0], broken], demo_n=30)
    assert rc != 0
    assert "demo_n (30) must be below 10" in out and "Reads a missing item" not in out, out


@pytest.mark.parametrize("rule, expected", [
    ({"name": "No message", "that": "true"}, "No message must be a dict with that and msg"),
    ({"name": "Typo", "that": "true", "msg": "m", "loop_vars": "x"}, "Typo must be a dict with that and msg, and only"),
    ("a string", "rule 0 must be a dict"),
])
def test_a_malformed_rule_is_refused_by_name(tmp_path, rule, expected):
    rc, out = run(tmp_path, rules=[rule])
    assert rc != 0
    assert expected in out, out


def test_packages_must_be_a_list_of_names(tmp_path):
    rc, out = run(tmp_path, packages="{{ 'one-package' }}")
    assert rc != 0
    assert "Role demo: packages must be a list of package names, got 'one-package'" in out, out


def flow_roles(tmp_path):
    """Two roles under flows/: one whose firewall_flows.yml names one of its two options, one without the file."""
    for name, flows in (("other", "firewall_flows: [{port: '{{ other_port }}'}]\n"), ("plain", None)):
        role = tmp_path / "flows" / name
        (role / "meta").mkdir(parents=True)
        (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"validate": {"options": {
            f"{name}_port": {"type": "int", "description": "A port. [check: port]"},
            f"{name}_count": {"type": "int", "description": "A count. [check: int 1..]"}}}}}))
        if flows:
            (role / "firewall_flows.yml").write_text(flows)
    return {"named_in": {"file": "firewall_flows.yml", "roles_dir": str(tmp_path / "flows")}}


def test_the_options_a_roles_flow_file_names_are_checked_in_the_same_call(tmp_path):
    args = flow_roles(tmp_path)
    rc, result = run(tmp_path, extra_args=args, extra_vars={"other_port": 8080, "other_count": 0, "plain_port": 0})
    # other_count is not named in the flows, plain has no flow file: neither is checked here.
    assert rc == 0, result
    assert result["named_in_files"] == [str(tmp_path / "flows" / "other" / "firewall_flows.yml")]
    rc, out = run(tmp_path, extra_args=args, extra_vars={"other_port": 70000})
    assert rc != 0
    assert "other_port: got 70000" in out and "(role other, named in its firewall_flows.yml)" in out, out
    assert "Role demo: 1 variable value(s) refused" in out, out


def test_named_in_takes_a_file_name_not_a_path(tmp_path):
    args = flow_roles(tmp_path)
    args["named_in"]["file"] = "meta/argument_specs.yml"
    rc, out = run(tmp_path, extra_args=args)
    assert rc != 0
    assert "named_in" in out and "file must be a file name" in out, out


def test_a_flow_role_without_an_argument_spec_is_named_not_a_traceback(tmp_path):
    args = flow_roles(tmp_path)
    (tmp_path / "flows" / "nospec").mkdir()
    (tmp_path / "flows" / "nospec" / "firewall_flows.yml").write_text("firewall_flows: []\n")
    rc, out = run(tmp_path, extra_args=args, extra_vars={"other_port": 8080})
    assert rc != 0
    assert "infra_check_vars: named_in" in out and "nospec/meta/argument_specs.yml" in out, out
    assert "Traceback" not in out and "unexpected" not in out.lower(), out


def test_named_in_renders_each_file_with_the_task_variables_when_asked(tmp_path):
    args = flow_roles(tmp_path)
    args["named_in"]["render"] = True
    rc, result = run(tmp_path, extra_args=args, extra_vars={"other_port": 8080})
    assert rc == 0, result
    # Rendered as the template module would, then read as YAML: the port is the variable's value.
    assert result["named_in_rendered"] == [{"firewall_flows": [{"port": "8080"}]}]
    rc, result = run(tmp_path, extra_args={"named_in": {**args["named_in"], "render": False}},
                     extra_vars={"other_port": 8080})
    assert rc == 0 and "named_in_rendered" not in result, result


def test_a_flow_file_that_cannot_be_rendered_is_named(tmp_path):
    args = flow_roles(tmp_path)
    args["named_in"]["render"] = True
    (tmp_path / "flows" / "other" / "firewall_flows.yml").write_text(
        "firewall_flows: [{port: '{{ other_port }}', to: '{{ no_such_variable }}'}]\n")
    rc, out = run(tmp_path, extra_args=args, extra_vars={"other_port": 8080})
    assert rc != 0
    assert "role other's firewall_flows.yml" in out and "could not be rendered" in out, out
    assert "no_such_variable" in out, out


# --- roles: several roles' checks in one task (site.yml's preflight) ---

def roles_run(tmp_path, play_vars=None, extra_vars=None, site_rules=None, roles=("alpha", "beta")):
    """Two roles whose checks read their defaults (one derived from the play), their vars and
    the task's own vars, run by one ``infra_check_vars: {roles: ...}`` task; the result or the output."""
    spec = {"argument_specs": {"validate": {"options": {
        "alpha_port": {"type": "int", "description": "A port. [check: port]"},
        "alpha_limit": {"type": "int", "description": "A limit. [check: int 1..]"},
    }}}}
    alpha = tmp_path / "roles" / "alpha"
    for sub in ("meta", "tasks", "defaults", "vars"):
        (alpha / sub).mkdir(parents=True, exist_ok=True)
    (alpha / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(spec))
    # A default derived from the play's variable, and a role variable the rule reads.
    (alpha / "defaults" / "main.yml").write_text(yaml.safe_dump({
        "alpha_port": "{{ site_port | default(8080) }}", "alpha_limit": 10}))
    (alpha / "vars" / "main.yml").write_text(yaml.safe_dump({"alpha_ceiling": 100, "alpha_packages": ["alpha-pkg"]}))
    (alpha / "tasks" / "validate.yml").write_text(yaml.safe_dump([
        {"name": "Check", "register": "alpha_vars_checked", "delegate_to": "localhost",
         "when": "role_name not in infra_roles_checked | default([])",
         "vars": {"alpha_floor": 2},
         "infra_check_vars": {
             "rules": [{"name": "Within bounds", "that": "alpha_floor <= alpha_limit | int <= alpha_ceiling",
                        "msg": "alpha_limit ({{ alpha_limit }}) must be from {{ alpha_floor }} to {{ alpha_ceiling }}"}],
             "packages": "{{ alpha_packages + [role_name ~ '-extra'] }}"}},
    ]))
    beta = tmp_path / "roles" / "beta"
    for sub in ("meta", "tasks", "defaults"):
        (beta / sub).mkdir(parents=True, exist_ok=True)
    (beta / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"validate": {"options": {
        "beta_name": {"type": "str", "description": "A name. [check: nonempty]"}}}}}))
    (beta / "defaults" / "main.yml").write_text(yaml.safe_dump({"beta_name": "{{ alpha_port | default('no alpha here') }}"}))
    (beta / "tasks" / "validate.yml").write_text(yaml.safe_dump([
        {"name": "Check", "register": "beta_vars_checked", "delegate_to": "localhost",
         "infra_check_vars": {"packages": "{{ ['beta-pkg', beta_name | replace(' ', '-')] }}"}},
        {"name": "Another task of the file, not run", "ansible.builtin.fail": {"msg": "never"}},
    ]))
    check = {"roles": list(roles) if isinstance(roles, tuple) else roles, "roles_dir": str(tmp_path / "roles")}
    if site_rules is not None:
        check["rules"] = site_rules
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "vars": play_vars or {},
        "tasks": [
            {"name": "Check the roles", "infra_check_vars": check, "register": "checked"},
            {"name": "Keep the result", "ansible.builtin.copy": {"content": "{{ checked | to_json }}",
                                                                  "dest": str(tmp_path / "result.json"), "mode": "0600"}},
        ],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    args = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")]
    if extra_vars:
        args += ["-e", json.dumps(extra_vars)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False)
    if proc.returncode == 0:
        return 0, json.loads((tmp_path / "result.json").read_text())
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def test_roles_are_checked_with_their_defaults_vars_and_task_vars_in_one_task(tmp_path):
    rc, result = roles_run(tmp_path, play_vars={"site_port": 8443})
    assert rc == 0, result
    assert set(result["roles"]) == {"alpha", "beta"}
    assert result["roles"]["alpha"]["packages"] == ["alpha-extra", "alpha-pkg"]  # role_name and role vars
    assert result["roles"]["alpha"]["register"] == "alpha_vars_checked"
    # Each role sees its own defaults only, as include_role does: beta never sees alpha's.
    assert result["packages"] == ["alpha-extra", "alpha-pkg", "beta-pkg", "no-alpha-here"]
    rc, result = roles_run(tmp_path, play_vars={"site_port": 70000})
    assert rc != 0 and "alpha_port (from site_port): got 70000, expected a port from 1 to 65535" in result, result


def test_every_roles_refusals_are_named_together(tmp_path):
    # The inventory (play) outranks a default; a role's vars outrank the play; extra vars outrank all.
    rc, out = roles_run(tmp_path, play_vars={"alpha_limit": 0, "beta_name": ""})
    assert rc != 0
    assert "Role alpha: 1 variable value(s) refused: alpha_limit: got 0" in out, out
    assert "Role beta: 1 variable value(s) refused: beta_name: got ''" in out, out
    rc, out = roles_run(tmp_path, play_vars={"alpha_limit": 101, "alpha_ceiling": 1000})
    assert rc != 0 and "alpha_limit (101) must be from 2 to 100" in out, out
    rc, result = roles_run(tmp_path, play_vars={"alpha_limit": 101}, extra_vars={"alpha_ceiling": 1000})
    assert rc == 0, result


def test_the_callers_own_rules_are_checked_with_the_task_variables(tmp_path):
    rule = [{"name": "Site rule", "that": "site_port | default(1) < 9000", "msg": "site_port {{ site_port }} too high"}]
    rc, out = roles_run(tmp_path, play_vars={"site_port": 9001}, site_rules=rule)
    assert rc != 0 and "1 rule(s) broken: site_port 9001 too high" in out, out
    rc, result = roles_run(tmp_path, play_vars={"site_port": 8000}, site_rules=rule)
    assert rc == 0, result


@pytest.mark.parametrize("roles, expected", [
    (["alpha", "gamma"], "role 'gamma'"),
    ("alpha", "roles must be a list of role names"),
])
def test_a_role_without_a_check_or_bad_roles_is_named(tmp_path, roles, expected):
    rc, out = roles_run(tmp_path, roles=roles)
    assert rc != 0 and expected in out, out
