"""Unit tests of filter_plugins/patching.py."""

import pytest
from ansible.errors import AnsibleFilterError

from patching import (FilterModule, infra_apt_mirrors, infra_apt_pending_security, infra_check_regexes,
                      infra_rolling_update_order)

ONE_LINE = "deb http://mirror.example/debian bookworm main\n"
DEB822 = """\
# Managed by Ansible
Types: deb
URIs: http://mirror.example/debian/
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: trixie-security
Components: main
"""

# What `apt-get -s upgrade` printed on a Debian 12 lab server.
APT_GET_S = """\
Reading package lists...
Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst openssl [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst nginx-common [1.22.1-9] (1.22.1-9+deb12u2 Debian-Security:12/oldstable-security [all])
Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.15/oldstable-updates [all])
Inst mariadb-server [1:10.11.6-0+deb12u1] (1:10.11.14-0+deb12u2 Debian-Security:12/oldstable-security [amd64])
Conf libssl3 (3.0.17-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
"""


def test_one_line_sources_give_the_mirror_and_derive_the_security_mirror():
    assert infra_apt_mirrors(ONE_LINE) == {"mirror": "http://mirror.example/debian",
                                           "security": "http://mirror.example/debian-security"}


def test_deb822_sources_give_both_mirrors():
    assert infra_apt_mirrors(DEB822) == {"mirror": "http://mirror.example/debian",
                                         "security": "http://security.example/debian-security"}


def test_our_own_file_wins_over_the_old_one_line_file():
    """site.yml reads debian.sources first: once written, the server's mirror stays the same."""
    assert infra_apt_mirrors(DEB822 + "\n" + "deb http://old.example/debian bookworm main\n")["mirror"] == \
        "http://mirror.example/debian"


def test_disabled_and_source_stanzas_are_ignored():
    text = "Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n" \
           "Types: deb\nURIs: http://off.example/debian\nSuites: trixie\nEnabled: no\n\n" + ONE_LINE
    assert infra_apt_mirrors(text)["mirror"] == "http://mirror.example/debian"


def test_commented_and_bracketed_one_line_entries():
    text = "# deb http://commented.example/debian bookworm main\n" \
           "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    assert infra_apt_mirrors(text)["mirror"] == "http://mirror.example/debian"


@pytest.mark.parametrize("text", ["", "# nothing\n", "deb-src http://x.example/debian bookworm main\n"])
def test_no_mirror_names_the_variable_to_set(text):
    with pytest.raises(AnsibleFilterError, match="common_apt_mirror"):
        infra_apt_mirrors(text)


def test_pending_security_updates_only_from_the_security_suite():
    assert infra_apt_pending_security(APT_GET_S) == ["libssl3", "mariadb-server", "nginx-common", "openssl"]


def test_held_packages_wait_for_the_rolling_update():
    assert infra_apt_pending_security(APT_GET_S, ["^nginx(-.*)?$", "^mariadb-"]) == ["libssl3", "openssl"]


def test_hold_patterns_match_at_the_start_of_the_name_like_unattended_upgrades():
    assert infra_apt_pending_security(APT_GET_S, ["ssl"]) == ["libssl3", "mariadb-server", "nginx-common", "openssl"]


def test_nothing_pending():
    assert infra_apt_pending_security("Reading package lists...\n0 upgraded, 0 newly installed\n") == []


@pytest.mark.parametrize("hold, field", [("nginx", "hold must be a list"), (["(unclosed"], "hold: '(unclosed'"),
                                         ([""], "hold: '' is not")])
def test_bad_hold_is_named(hold, field):
    with pytest.raises(AnsibleFilterError, match=field.replace("(", r"\(")):
        infra_apt_pending_security(APT_GET_S, hold)


GROUPS = {
    "loadbalancers": ["lb-01", "lb-02"],
    "webservers": ["web-01", "web-02", "web-03"],
    "db_primary": ["web-01"],
    "db_replica": ["web-02", "db-03"],
}


def test_rolling_order_replicas_then_web_then_primary_then_load_balancers():
    assert infra_rolling_update_order(GROUPS) == ["web-02", "db-03", "web-03", "web-01", "lb-01", "lb-02"]


def test_rolling_order_of_some_groups_only():
    assert infra_rolling_update_order(GROUPS, ["webservers"]) == ["web-02", "web-03", "web-01"]
    assert infra_rolling_update_order(GROUPS, ["loadbalancers"]) == ["lb-01", "lb-02"]
    assert infra_rolling_update_order(GROUPS, ["db_primary", "db_replica"]) == ["web-02", "db-03", "web-01"]


@pytest.mark.parametrize("only, message", [
    (["webserver"], "rolling_update_groups: unknown group 'webserver'"),
    ("webservers", "rolling_update_groups must be a list"),
    ([], "rolling_update_groups must name at least one group"),
])
def test_rolling_order_bad_groups_are_named(only, message):
    with pytest.raises(AnsibleFilterError, match=message):
        infra_rolling_update_order(GROUPS, only)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"infra_apt_mirrors", "infra_apt_pending_security",
                                             "infra_check_regexes", "infra_rolling_update_order"}


def test_regexes_are_returned_or_the_variable_named():
    assert infra_check_regexes(["^a", "b$"], "v") == ["^a", "b$"]
    with pytest.raises(AnsibleFilterError, match="common_unattended_upgrades_hold: '\\[' is not a regular"):
        infra_check_regexes(["["], "common_unattended_upgrades_hold")
