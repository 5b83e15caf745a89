"""Every variable of every role is constrained, and preflight refuses a malformed value of each.

For each option of each role's `validate` entry point (meta/argument_specs.yml), malformed values
are derived from its declared type and its `[check: ...]` constraints (wrong type, out of range,
empty, malformed format...). Each must stop that role's validation, as site.yml's preflight runs
it, with a message that names the variable, no internal error text, and no host touched.

The cases are batched: one generated playbook per host, each case a block that validates the
roles the variable reaches (its own, and any other role whose files mention it, in site.yml's
order) with the malformed value, and records the outcome; the playbooks run in parallel.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

import infra_check_vars as icv

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
# site.yml's preflight order (nginx first: it publishes what the load balancers size from), then
# the roles of the other playbooks (a variable's owner before the roles that read it).
ORDER = ["nginx", "common", "firewall", "pki", "haproxy", "keepalived", "certbot", "mysql", "exporters", "sumologic", "rsyslog",
         "backup", "prometheus", "rolling_update"]
LB_ROLES = {"haproxy", "keepalived", "certbot"}
INTERNAL = ("object has no element", "Traceback", "AnsibleUndefined", "is undefined", "has no attribute",
            "_AnsibleLazyTemplate", "unexpected templating type", "Unexpected failure", "NoneType")
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBuvKFA0l0F/gFg6Aza2KHf2+ZquHWQpzKajgGD+Z8J8 test@example.invalid"


def specs(role):
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def defaults(role):
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(path.read_text()) or {} if path.is_file() else {}


def test_every_option_of_every_entry_point_carries_a_constraint():
    missing, count = [], 0
    for role in ROLES:
        for entry, spec in specs(role).items():
            for name, option in (spec.get("options") or {}).items():
                count += 1
                if icv.parse_constraints(option.get("description")) is None:
                    missing.append(f"{role} ({entry}): {name}")
    assert count > 0
    assert not missing, "options without a [check: ...] constraint: " + ", ".join(missing)


def test_every_role_has_a_validate_entry_point_sharing_mains_options():
    for role in ROLES:
        entry = specs(role)
        assert "validate" in entry, role
        assert entry["validate"]["options"] == entry["main"]["options"], role
        assert (ROOT / "roles" / role / "tasks" / "validate.yml").is_file(), role
        assert "infra_check_vars" in (ROOT / "roles" / role / "tasks" / "validate.yml").read_text(), role


# --- Deriving malformed values ----------------------------------------------------------------

WRONG_TYPE = {"int": "not-a-number", "bool": "sometimes", "str": ["a", "list"], "path": ["a", "list"],
              "list": {"not": "a list"}, "dict": ["not", "a", "mapping"], "float": "not-a-number"}


def _ms(time_text):
    return icv.haproxy_time_ms(time_text)


def bad_scalars(kind, args, option):
    """Malformed scalar values for one constraint kind (for a list, each becomes a one-element list)."""
    if kind == "int":
        low, high = icv._range(args[0] if args else "..")
        return ([int(low) - 1] if low is not None else []) + ([int(high) + 1] if high is not None else []) + ["12abc"]
    if kind == "haproxy_time":
        low, high = icv._range(args[0] if args else "..")
        out = ["5 s", "soon"]
        if low and _ms(low) >= 1:
            out.append(f"{_ms(low) - 1}ms")
        if high:
            out.append(f"{_ms(high) + 1000}ms")
        return out
    if kind == "minlen":
        return ["x" * (int(args[0]) - 1)]
    if kind == "match":
        return [c for c in ("bad value!", "UPPER lower ;", "-") if not re.fullmatch(args[0], c)][:1]
    if kind == "url":
        return ["no-scheme.example/x"] + [f"{s}://x.example/" for s in ("ftp", "gopher") if s not in args][:1]
    if kind == "notin":
        return [args[0]]
    if kind == "ip":
        return ["999.1.1.1"] + (["0.0.0.0", "127.0.0.1"] if "routable" in args else [])
    if kind == "hostport":
        return ["no-port", "h:70000"] + (["0.0.0.0:8080"] if args else [])
    simple = {"port": [0, 65536], "nginx_time": ["10 minutes"], "duration": ["5 seconds"], "size": ["lots", "256MB"],
              "cidr": ["10.0.0.0/40"], "host": ["bad..name"], "domain": ["WWW.Example..com"], "email": ["not-an-email"],
              "sshkey": ["not a key"], "hhmm": ["25:00"], "package": ["Not A Package"], "abspath": ["relative/path"],
              "mode": ["999"], "regex": ["(unclosed"], "group": ["no_such_group"], "group_with_hosts": ["no_such_group"],
              "group_or_host": ["no_such_group"]}
    return simple.get(kind, [])


def malformed(name, option, default):
    """(value, what) pairs that must all be refused."""
    kind = option.get("type", "str")
    constraints = icv.parse_constraints(option.get("description")) or []
    allowed = [str(a[0]) if a else "" for k, a in constraints if k == "allow"]
    cases = []
    if kind in WRONG_TYPE:
        cases.append((WRONG_TYPE[kind], "wrong type"))
    if kind == "bool":  # what -e name=false hands over: a string, true in a condition
        cases.append(("false", "a string that means false"))
    if option.get("choices"):
        cases.append((["no-such-choice"] if kind == "list" else "no-such-choice", "not a choice"))
    is_list = kind == "list"
    first = default[0] if isinstance(default, list) and default and "{{" not in str(default[0]) else None
    for ckind, args in constraints:
        if ckind == "nonempty":
            cases.append(({"list": [], "dict": {}}.get(kind, ""), "empty"))
        elif ckind == "unique" and first is not None:
            cases.append(([first, first], "duplicates"))
        elif ckind in ("keys", "required_keys", "values", "keymatch"):
            key = args[0] if ckind == "values" else "bad key!" if ckind == "keymatch" else "no_such_key"
            bad = {key: "no-such-value"} if ckind in ("keys", "values", "keymatch") else {}
            if ckind == "values" and not any(k == "keys" for k, _ in constraints):
                bad = {"x": "no-such-value"}
            cases.append(([bad] if is_list else bad, f"{ckind} malformed"))
        else:
            for value in bad_scalars(ckind, args, option):
                cases.append(([value] if is_list else value, f"{ckind} {' '.join(args)}".strip()))
    return [(v, w) for v, w in cases if str(v) not in allowed]


ROLE_TEXT = {role: "".join(p.read_text() for p in sorted((ROOT / "roles" / role).rglob("*"))
                            if p.is_file() and p.suffix in (".yml", ".j2") and "meta" not in p.parts) for role in ORDER}


def consumers(name):
    """The roles whose files mention a variable (its own included), in preflight order."""
    return [role for role in ORDER if re.search(rf"\b{re.escape(name)}\b", ROLE_TEXT[role])]


def all_cases():
    cases = []
    # INFRA_WALK_ROLES=haproxy,nginx walks only these roles (while working on them).
    only = [r for r in os.environ.get("INFRA_WALK_ROLES", "").split(",") if r]
    for role in [r for r in ROLES if not only or r in only]:
        role_defaults = defaults(role)
        for name, option in specs(role)["validate"]["options"].items():
            roles = [r for r in consumers(name) if r in ORDER]
            if role not in roles:
                roles.append(role)
            roles.sort(key=ORDER.index)
            host = "lb-01" if role in LB_ROLES else "web-01"
            roles = [r for r in roles if host == "lb-01" and r not in ("nginx", "mysql") or host == "web-01" and r not in LB_ROLES]
            for value, what in malformed(name, option, role_defaults.get(name)):
                cases.append({"role": role, "name": name, "value": value, "what": what, "host": host, "roles": roles})
    return cases


def inventory(tmp_path):
    groups = {"loadbalancers": {"hosts": {"lb-01": None, "lb-02": {"ansible_host": "127.0.0.2"}}}, "webservers": {"hosts": {"web-01": None, "web-02": None}},
              "db_primary": {"hosts": {"web-01": None}}, "db_replica": {"hosts": {"web-02": None}},
              "monitoring": {"hosts": {"monitor": None}}, "logging": {"hosts": {"monitor": None}},
              "backups": {"hosts": {"monitor": None}},
              "servers": {"children": {"loadbalancers": None, "webservers": None, "db_primary": None, "db_replica": None}}}
    variables = {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "ops",
                 "common_admin_authorized_keys": [KEY], "pki_ca_passphrase": "a-test-passphrase",
                 "mysql_replication_password": "a-test-password", "mysql_app_password": "another-test-password",
                 "sumologic_install": False, "sumologic_mysql_password": "a-third-test-password",
                 "exporters_listen_address": "192.0.2.1",
                 "keepalived_vip": "127.0.0.100/8", "keepalived_password": "walk"}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"vars": variables, "children": groups}}))
    return path


RECORD = ("{{ ansible_failed_result.msg | default('') }} "
          "{{ ansible_failed_result.results | default([]) | map(attribute='msg', default='') | join(' ') }}")


def walk_playbook(cases, host):
    """One play on `host`: a block per case; its last task (`accepted N`) or its rescue (`refused N`) says."""
    tasks = []
    for number, case in cases:
        tasks.append({
            "name": f"case {number}",
            "vars": {case["name"]: case["value"]},
            "block": [{"name": f"validate {role}", "ansible.builtin.include_role": {"name": role, "tasks_from": "validate"}}
                      for role in case["roles"]]
                     + [{"name": f"accepted {number}", "ansible.builtin.debug": {"msg": "ACCEPTED"}}],
            "rescue": [{"name": f"refused {number}", "ansible.builtin.debug": {"msg": RECORD}}],
        })
    return [{"name": "publish the web servers' capacity", "hosts": "webservers", "gather_facts": False,
             "vars": {"firewall_roles_dir": str(ROOT / "roles")},
             "tasks": [{"name": "validate nginx", "ansible.builtin.include_role": {"name": "nginx", "tasks_from": "validate"}}]},
            {"name": f"walk {host}", "hosts": host, "gather_facts": False,
             "vars": {"firewall_roles_dir": str(ROOT / "roles")}, "tasks": tasks}]


def run_walk(tmp_path, inv, host, cases):
    book = tmp_path / f"walk-{host}-{cases[0][0]}.yml"
    book.write_text(yaml.safe_dump(walk_playbook(cases, host), sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json", ANSIBLE_ROLES_PATH=str(ROOT / "roles"))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inv), str(book)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "UNREACHABLE" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["stats"][host]["unreachable"] == 0
    outcomes = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            verdict, _, number = task["task"]["name"].partition(" ")
            if verdict in ("accepted", "refused") and host in task["hosts"]:
                outcomes[number] = task["hosts"][host]["msg"]
    return outcomes


def test_preflight_refuses_every_malformed_value_naming_the_variable(tmp_path, record_property):
    cases = all_cases()
    assert cases, "no variable to walk (INFRA_WALK_ROLES names no role?)"
    started = time.time()
    inv = inventory(tmp_path)
    numbered = list(enumerate(cases))
    batches = []
    for host in ("lb-01", "web-01"):
        mine = [c for c in numbered if c[1]["host"] == host]
        if not mine:
            continue
        size = max(1, -(-len(mine) // (2 if host == "web-01" else 1)))
        batches += [(host, mine[i:i + size]) for i in range(0, len(mine), size)]
    with ThreadPoolExecutor(len(batches)) as pool:
        outcomes = {}
        for result in pool.map(lambda b: run_walk(tmp_path, inv, *b), batches):
            outcomes.update(result)
    problems = []
    for number, case in numbered:
        said = outcomes.get(str(number))
        label = f"{case['name']}={case['value']!r} ({case['what']}; roles {', '.join(case['roles'])})"
        if said is None:
            problems.append(f"{label}: no outcome")
        elif said == "ACCEPTED":
            problems.append(f"{label}: accepted")
        elif case["name"] not in said:
            problems.append(f"{label}: refused without naming it: {said[:300]}")
        elif any(text in said for text in INTERNAL):
            problems.append(f"{label}: internal error text: {said[:300]}")
    variables = {(c["role"], c["name"]) for c in cases}
    # Printed at the end of the run by tests/unit/conftest.py (with or without pytest-xdist).
    record_property("summary", f"argument specs walked: {len(variables)} variables of {len(ROLES)} roles, "
                               f"{len(cases)} malformed values, {len(batches)} playbook runs, {time.time() - started:.0f}s")
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
