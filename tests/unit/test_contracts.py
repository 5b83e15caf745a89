"""Facts that one role owns and another one uses: each written once where it is owned, and
checked here where a second copy cannot be avoided (a playbook that runs without the owner)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def defaults(role):
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def test_rolling_update_drives_haproxy_where_the_haproxy_role_puts_it():
    template = (ROOT / "roles" / "haproxy" / "templates" / "haproxy.cfg.j2").read_text()
    rolling, haproxy = defaults("rolling_update"), defaults("haproxy")
    socket = re.search(r"^\s*stats socket (\S+) .*level admin", template, re.M)
    assert socket and socket.group(1) == rolling["rolling_update_haproxy_socket"]
    backend = re.search(rf"^backend {re.escape(rolling['rolling_update_haproxy_backend'])}\n(.*?)^(?:backend|frontend|listen|defaults) ",
                        template, re.M | re.S)
    assert backend and "groups[haproxy_backend_group]" in backend.group(1), "the web servers' backend moved"
    assert rolling["rolling_update_health_path"] == haproxy["haproxy_health_path"]
    assert rolling["rolling_update_backend_ca_file"] == haproxy["haproxy_backend_ca_file"]


def test_the_daily_run_holds_what_the_rolling_update_restarts():
    """Every daemon the rolling update restarts comes from a package the daily run holds back."""
    hold = [re.compile(p) for p in defaults("common")["common_unattended_upgrades_hold"]]
    packages = {"nginx": "nginx", "mariadb": "mariadb-server", "haproxy": "haproxy"}
    for daemons in defaults("rolling_update")["rolling_update_daemons_by_group"].values():
        for daemon in daemons:
            assert any(p.match(packages[daemon]) for p in hold), f"{daemon} is not held back from the daily run"


def owners():
    """{variable: (owner, default value)} of every role's defaults and the site's group_vars."""
    found = {}
    for path in sorted(ROOT.glob("roles/*/defaults/main.yml")):
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            found[name] = (path.parts[-3], value)
    for path in sorted((ROOT / "group_vars" / "all").glob("*.yml")):
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            found[name] = ("group_vars/all", value)
    return found


# `name | default(literal)`: a literal number, quoted string or list of them.
FALLBACK = re.compile(r"\b([a-z][a-z0-9_]*)\s*\|\s*default\(\s*(\d+|'[^']*'|\"[^\"]*\"|\[[^\]]*\])\s*[,)]")


def fallbacks():
    """(file, variable, literal) for every fallback to a literal written outside the variable's owner."""
    known = owners()
    files = [*ROOT.glob("roles/**/*.yml"), *ROOT.glob("roles/**/*.j2"), *ROOT.glob("playbooks/*.yml"),
             ROOT / "site.yml", *ROOT.glob("lab/*.yml")]
    for path in sorted(files):
        rel = path.relative_to(ROOT)
        for name, literal in FALLBACK.findall(path.read_text()):
            if name not in known:
                continue
            owner = known[name][0]
            if rel.parts[:2] == ("roles", owner) and rel.parts[2] == "defaults":
                continue
            yield str(rel), name, yaml.safe_load(literal)


def test_every_fallback_to_another_roles_default_equals_that_default():
    """A role or playbook that runs without a variable's owner falls back to a copy of its
    default (`exporters_node_port | default(9100)`): each copy must equal the owner's value."""
    known, seen, wrong = owners(), 0, []
    for where, name, literal in fallbacks():
        seen += 1
        if literal != known[name][1]:
            wrong.append(f"{where}: {name} | default({literal!r}) but {known[name][0]} says {known[name][1]!r}")
    assert seen >= 20, f"the scan found only {seen} fallbacks: is FALLBACK still matching?"
    assert not wrong, "\n".join(wrong)


def test_the_database_socket_is_the_flavours():
    """The exporters and the collector reach the server on the socket the mysql role's flavours use."""
    flavours = [yaml.safe_load((ROOT / "roles/mysql/vars" / f).read_text())["mysql_socket"]
                for f in ("mariadb.yml", "mysql.yml")]
    assert len(set(flavours)) == 1
    assert defaults("exporters")["exporters_mysqld_socket"] == flavours[0]
    assert defaults("sumologic")["sumologic_mysql_socket"] == flavours[0]
