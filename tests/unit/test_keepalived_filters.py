"""filter_plugins/keepalived.py: the load balancers' VRRP pair, checked against the inventory."""

import pytest
from ansible.errors import AnsibleFilterError

from keepalived import FilterModule, infra_keepalived_nodes

LBS = ["lb-01", "lb-02"]
HOSTVARS = {"lb-01": {"ansible_host": "172.30.10.10"}, "lb-02": {"ansible_host": "172.30.10.9"}}


def nodes(hosts=LBS, hostvars=None, vip="172.30.10.100/24", password="s3cret!", nopreempt=False):
    return infra_keepalived_nodes(hosts, HOSTVARS if hostvars is None else hostvars, vip, password, nopreempt)


def test_the_first_load_balancer_leads_and_each_peers_with_the_others():
    assert nodes() == {
        "lb-01": {"address": "172.30.10.10", "priority": 250, "state": "MASTER", "peers": ["172.30.10.9"]},
        "lb-02": {"address": "172.30.10.9", "priority": 240, "state": "BACKUP", "peers": ["172.30.10.10"]}}


def test_a_third_node_peers_with_both_and_priorities_follow_the_group_order():
    hostvars = dict(HOSTVARS, **{"lb-03": {"ansible_host": "172.30.10.8"}})
    result = nodes(LBS + ["lb-03"], hostvars)
    assert [result[h]["priority"] for h in ("lb-01", "lb-02", "lb-03")] == [250, 240, 230]
    assert result["lb-03"]["peers"] == ["172.30.10.10", "172.30.10.9"]


def test_set_priorities_choose_the_leader_and_keepalived_address_wins_over_ansible_host():
    hostvars = {"lb-01": {"ansible_host": "lb-01.example.org", "keepalived_address": "172.30.10.10",
                          "keepalived_priority": 100},
                "lb-02": {"ansible_host": "172.30.10.9", "keepalived_priority": "150"}}
    result = nodes(hostvars=hostvars)
    assert (result["lb-01"]["state"], result["lb-02"]["state"]) == ("BACKUP", "MASTER")
    assert result["lb-01"]["address"] == "172.30.10.10" and result["lb-02"]["priority"] == 150


def test_without_preemption_every_node_starts_backup_and_may_share_a_priority():
    hostvars = {h: dict(v, keepalived_priority=200) for h, v in HOSTVARS.items()}
    assert {n["state"] for n in nodes(hostvars=hostvars, nopreempt=True).values()} == {"BACKUP"}


def test_ipv6_pair():
    hostvars = {"lb-01": {"ansible_host": "2001:db8::10"}, "lb-02": {"ansible_host": "2001:db8::9"}}
    assert nodes(hostvars=hostvars, vip="2001:db8::100/64")["lb-02"]["peers"] == ["2001:db8::10"]


@pytest.mark.parametrize("kwargs, message", [
    ({"hosts": ["lb-01"]}, "needs at least two load balancers, the group has 1 \\(lb-01\\)"),
    ({"hosts": "lb-01"}, "must be a list"),
    ({"vip": "10.0.0.100/24"}, "keepalived_vip 10.0.0.100/24 is outside the network of load balancer 'lb-01'"),
    ({"vip": "172.30.10.100"}, "keepalived_vip: 172.30.10.100 needs its prefix length"),
    ({"vip": "the-vip"}, "keepalived_vip: 'the-vip' is not an address"),
    ({"vip": "172.30.10.9/24"}, "keepalived_vip 172.30.10.9 is the address of load balancer 'lb-02'"),
    ({"vip": "2001:db8::100/64"}, "outside the network of load balancer 'lb-01'"),
    ({"password": ""}, "keepalived_password is empty"),
    ({"password": None}, "keepalived_password is empty"),
    ({"password": "longer-than-8"}, "keepalived_password: VRRP keeps only 8 characters, this one has 13"),
    ({"hostvars": {"lb-01": HOSTVARS["lb-01"], "lb-02": {}}}, "'lb-02' has no IP address for VRRP"),
    ({"hostvars": {"lb-01": HOSTVARS["lb-01"], "lb-02": {"ansible_host": "lb-02.example.org"}}},
     "'lb-02' has no IP address for VRRP: set keepalived_address"),
    ({"hostvars": {h: dict(v, keepalived_priority=200) for h, v in HOSTVARS.items()}},
     "keepalived_priority: lb-01 and lb-02 share the priority 200: without keepalived_nopreempt"),
    ({"hostvars": {"lb-01": dict(HOSTVARS["lb-01"], keepalived_priority=255), "lb-02": HOSTVARS["lb-02"]}},
     "keepalived_priority of 'lb-01': 255 is out of range 1-254"),
    ({"hostvars": {"lb-01": dict(HOSTVARS["lb-01"], keepalived_priority="high"), "lb-02": HOSTVARS["lb-02"]}},
     "keepalived_priority of 'lb-01': 'high' is not a whole number"),
    ({"hostvars": {"lb-01": dict(HOSTVARS["lb-01"], keepalived_priority=True), "lb-02": HOSTVARS["lb-02"]}},
     "keepalived_priority of 'lb-01': True is not a whole number"),
])
def test_a_pair_that_cannot_work_is_refused_naming_the_field(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        nodes(**kwargs)


def test_three_nodes_two_sharing_a_lower_priority_are_refused_too():
    hostvars = dict(HOSTVARS, **{"lb-03": {"ansible_host": "172.30.10.8", "keepalived_priority": 240}})
    with pytest.raises(AnsibleFilterError, match="lb-02 and lb-03 share the priority 240"):
        nodes(LBS + ["lb-03"], hostvars)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"infra_keepalived_nodes"}
