"""Unit tests of filter_plugins/inventory_checks.py."""

import pytest
from ansible.errors import AnsibleFilterError

from inventory_checks import DEFAULT_REQUIRED_GROUPS, FilterModule, infra_check_db_groups, infra_check_inventory

GOOD = {
    "all": ["lb-01", "web-01", "web-02"],
    "loadbalancers": ["lb-01"],
    "webservers": ["web-01", "web-02"],
    "db_primary": ["web-01"],
    "db_replica": ["web-02"],
    "servers": ["lb-01", "web-01", "web-02"],
}


def test_good_inventory_returns_servers_in_group_order():
    assert infra_check_inventory(GOOD) == ["lb-01", "web-01", "web-02"]


def test_more_hosts_are_an_inventory_change():
    groups = dict(GOOD, webservers=["web-01", "web-02", "web-03"], db_replica=["web-02", "web-03"],
                  servers=["lb-01", "web-01", "web-02", "web-03"])
    assert infra_check_inventory(groups) == ["lb-01", "web-01", "web-02", "web-03"]


@pytest.mark.parametrize("group", DEFAULT_REQUIRED_GROUPS)
def test_missing_group_is_named(group):
    groups = {k: v for k, v in GOOD.items() if k != group}
    with pytest.raises(AnsibleFilterError, match=f"missing the required group '{group}'"):
        infra_check_inventory(groups)


@pytest.mark.parametrize("group", DEFAULT_REQUIRED_GROUPS)
def test_empty_group_is_named(group):
    with pytest.raises(AnsibleFilterError, match=f"group '{group}' has no hosts"):
        infra_check_inventory(dict(GOOD, **{group: []}))


def test_two_primaries_are_refused():
    with pytest.raises(AnsibleFilterError, match="'db_primary' must hold exactly one host, it holds 2"):
        infra_check_inventory(dict(GOOD, db_primary=["web-01", "web-02"], db_replica=["web-03"],
                                   servers=["lb-01", "web-01", "web-02", "web-03"]))


def test_primary_and_replica_on_one_host_is_refused():
    with pytest.raises(AnsibleFilterError, match="'web-01' is in both 'db_primary' and 'db_replica'"):
        infra_check_inventory(dict(GOOD, db_replica=["web-01", "web-02"]))


def test_missing_parent_group_is_named():
    groups = {k: v for k, v in GOOD.items() if k != "servers"}
    with pytest.raises(AnsibleFilterError, match="missing the group 'servers'"):
        infra_check_inventory(groups)


def test_server_left_out_of_the_parent_group_is_named():
    groups = dict(GOOD, webservers=["web-01", "web-02", "web-03"], servers=["lb-01", "web-01", "web-02"])
    with pytest.raises(AnsibleFilterError, match="host 'web-03' of group 'webservers' is not in the group 'servers'"):
        infra_check_inventory(groups)


def test_db_groups_name_the_primary_and_sorted_replicas():
    groups = {"db_primary": ["web-01"], "db_replica": ["web-03", "web-02"]}
    assert infra_check_db_groups(groups) == {"primary": "web-01", "replicas": ["web-02", "web-03"]}


@pytest.mark.parametrize("groups, message", [
    ({"db_primary": [], "db_replica": ["b"]}, "'db_primary' must hold exactly one host, it holds 0"),
    ({"db_primary": ["a", "b"], "db_replica": ["c"]}, "it holds 2 \\(a, b\\)"),
    ({"db_primary": ["a"], "db_replica": []}, "inventory group 'db_replica' has no hosts"),
    ({"db_primary": ["a"], "db_replica": ["a"]}, "host 'a' is in both"),
])
def test_bad_db_groups_are_named(groups, message):
    with pytest.raises(AnsibleFilterError, match=message):
        infra_check_db_groups(groups)


def test_db_groups_are_the_roles_when_it_names_others():
    """The mysql role checks the groups it is given (a switchover's interim groups)."""
    groups = {"interim_primary": ["web-02"], "interim_replicas": ["web-01"]}
    assert infra_check_db_groups(groups, "interim_primary", "interim_replicas")["primary"] == "web-02"


@pytest.mark.parametrize("groups, required, message", [
    (["lb-01"], DEFAULT_REQUIRED_GROUPS, "groups must be a mapping"),
    (GOOD, "loadbalancers", "required must be a list"),
    (GOOD, ["loadbalancers", 3], "required must be a list"),
])
def test_wrong_types_are_refused(groups, required, message):
    with pytest.raises(AnsibleFilterError, match=message):
        infra_check_inventory(groups, required)


def test_filters_are_registered():
    assert FilterModule().filters() == {"infra_check_inventory": infra_check_inventory,
                                        "infra_check_db_groups": infra_check_db_groups}
