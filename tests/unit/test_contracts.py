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
