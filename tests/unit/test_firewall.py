"""Unit and property tests of filter_plugins/firewall.py, the policy compiler (ufw's side:
test_firewall_ufw.py)."""

import ipaddress
import random

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given, settings
from hypothesis import strategies as st

from firewall import FilterModule, firewall_check_flows, firewall_host_rules, firewall_iptables, parse_port
from firewall_ufw import FilterModule as UfwFilterModule

GROUPS = {
    "all": ["lb-01", "web-01", "web-02", "client"],
    "ungrouped": [],
    "loadbalancers": ["lb-01"],
    "webservers": ["web-01", "web-02"],
    "db_primary": ["web-01"],
    "db_replica": ["web-02"],
    "lab_support": ["client"],
}
HOSTVARS = {
    "lb-01": {"ansible_host": "172.30.10.10", "firewall_addresses": ["172.30.10.10", "fd00:30::10"]},
    "web-01": {"ansible_host": "172.30.10.11"},
    "web-02": {"ansible_host": "172.30.10.12"},
    "client": {"ansible_host": "172.30.10.30"},
}
POLICY = [
    {"name": "https-to-lb", "from": "any", "to": "loadbalancers", "ports": [80, 443]},
    {"name": "lb-to-web", "from": ["loadbalancers"], "to": ["webservers"], "ports": [443]},
    {"name": "replication", "from": ["db_replica"], "to": ["db_primary"], "ports": [3306]},
    {"name": "dns-udp", "from": ["10.0.0.0/8"], "to": ["web-01"], "ports": ["5300:5310"], "proto": "udp"},
]


def keys(rules):
    return [(r["family"], r["proto"], r["port"], r["source"]) for r in rules]


def test_lb_rules_open_web_ports_to_everyone_in_both_families():
    rules = firewall_host_rules(POLICY, "lb-01", GROUPS, HOSTVARS)
    assert keys(rules) == [
        (4, "tcp", "80", "0.0.0.0/0"), (4, "tcp", "443", "0.0.0.0/0"),
        (6, "tcp", "80", "::/0"), (6, "tcp", "443", "::/0"),
    ]


def test_web_rules_resolve_groups_to_addresses():
    rules = firewall_host_rules(POLICY, "web-01", GROUPS, HOSTVARS)
    assert keys(rules) == [
        (4, "tcp", "443", "172.30.10.10/32"),
        (4, "tcp", "3306", "172.30.10.12/32"),
        (4, "udp", "5300:5310", "10.0.0.0/8"),
        (6, "tcp", "443", "fd00:30::10/128"),
    ]
    assert rules[0]["flows"] == ["lb-to-web"]


def test_replica_gets_no_database_port():
    assert ("3306" not in [r["port"] for r in firewall_host_rules(POLICY, "web-02", GROUPS, HOSTVARS)])


def test_ssh_is_always_allowed_even_when_the_policy_forgets_it():
    rules = firewall_host_rules(POLICY, "web-02", GROUPS, HOSTVARS, always_ssh_from=["172.30.10.1", "192.0.2.0/24"])
    ssh = [r for r in rules if r["port"] == "22"]
    assert [(r["source"], r["flows"]) for r in ssh] == [
        ("172.30.10.1/32", ["always-ssh"]), ("192.0.2.0/24", ["always-ssh"])]


def test_same_rule_from_two_flows_appears_once_naming_both():
    policy = POLICY + [{"name": "lb-https-again", "from": "lb-01", "to": "web-01", "ports": 443}]
    rules = firewall_host_rules(policy, "web-01", GROUPS, HOSTVARS)
    https = [r for r in rules if r["port"] == "443" and r["family"] == 4]
    assert len(https) == 1
    assert https[0]["flows"] == ["lb-https-again", "lb-to-web"]


def test_iptables_rendering_default_deny_and_one_accept_per_rule():
    rules = firewall_host_rules(POLICY, "web-01", GROUPS, HOSTVARS, always_ssh_from=["172.30.10.1"])
    text = firewall_iptables(rules, 4)
    assert ":INPUT DROP [0:0]" in text
    assert "-A INPUT -i lo -j ACCEPT" in text
    assert "--ctstate ESTABLISHED,RELATED -j ACCEPT" in text
    accepts = [ln for ln in text.splitlines() if "--dport" in ln]
    assert accepts == [
        '-A INPUT -p tcp -s 172.30.10.1/32 -m tcp --dport 22 -m comment --comment "always-ssh" -j ACCEPT',
        '-A INPUT -p tcp -s 172.30.10.10/32 -m tcp --dport 443 -m comment --comment "lb-to-web" -j ACCEPT',
        '-A INPUT -p tcp -s 172.30.10.12/32 -m tcp --dport 3306 -m comment --comment "replication" -j ACCEPT',
        '-A INPUT -p udp -s 10.0.0.0/8 -m udp --dport 5300:5310 -m comment --comment "dns-udp" -j ACCEPT',
    ]
    assert text.rstrip().endswith("COMMIT")
    six = firewall_iptables(rules, 6)
    assert "-p ipv6-icmp -j ACCEPT" in six and "fd00:30::10/128" in six and "172.30" not in six


def test_vrrp_between_the_load_balancers_is_one_portless_rule_per_peer_and_protocol_112():
    groups = dict(GROUPS, loadbalancers=["lb-01", "lb-02"], all=GROUPS["all"] + ["lb-02"])
    hostvars = dict(HOSTVARS, **{"lb-02": {"ansible_host": "172.30.10.9"}})
    policy = POLICY + [{"name": "vrrp", "from": "loadbalancers", "to": "loadbalancers", "proto": "VRRP"}]
    assert firewall_check_flows(policy, groups)[-1]["ports"] == []
    rules = firewall_host_rules(policy, "lb-02", groups, hostvars)
    vrrp = [r for r in rules if r["proto"] == "vrrp"]
    # From every node of the group (the compiler keeps a host's own address, as for every flow).
    assert vrrp == [{"family": 4, "proto": "vrrp", "port": "", "source": "172.30.10.9/32", "flows": ["vrrp"]},
                    {"family": 4, "proto": "vrrp", "port": "", "source": "172.30.10.10/32", "flows": ["vrrp"]},
                    {"family": 6, "proto": "vrrp", "port": "", "source": "fd00:30::10/128", "flows": ["vrrp"]}]
    assert '-A INPUT -p 112 -s 172.30.10.10/32 -m comment --comment "vrrp" -j ACCEPT' in firewall_iptables(rules, 4)
    assert '-A INPUT -p 112 -s fd00:30::10/128 -m comment --comment "vrrp" -j ACCEPT' in firewall_iptables(rules, 6)
    assert not [r for r in firewall_host_rules(policy, "web-01", groups, hostvars) if r["proto"] == "vrrp"]


@pytest.mark.parametrize("flow, message", [
    ({"name": "x", "from": "any", "to": "nosuchgroup", "ports": [80]}, "flow 'x': to: unknown group or host 'nosuchgroup'"),
    ({"name": "x", "from": "ghost", "to": "webservers", "ports": [80]}, "flow 'x': from: unknown group or host 'ghost'"),
    ({"name": "x", "from": "any", "to": "webservers", "ports": [0]}, "port 0 is out of range"),
    ({"name": "x", "from": "any", "to": "webservers", "ports": [70000]}, "port 70000 is out of range"),
    ({"name": "x", "from": "any", "to": "webservers", "ports": ["http"]}, "port 'http' is not a number"),
    ({"name": "x", "from": "any", "to": "webservers", "ports": ["90:80"]}, "range 90:80 runs backwards"),
    ({"name": "x", "from": "any", "to": "webservers", "ports": []}, "flow 'x': ports: at least one port"),
    ({"name": "x", "from": "any", "to": "webservers", "ports": [80], "proto": "sctp"}, "unknown protocol 'sctp'"),
    ({"name": "x", "from": "webservers", "to": "webservers", "ports": [112], "proto": "vrrp"},
     "flow 'x': ports: vrrp has no ports (leave ports out)"),
    ({"name": "x", "from": "10.0.0.300/8", "to": "webservers", "ports": [80]}, "invalid CIDR '10.0.0.300/8'"),
    ({"name": "x", "from": "10.0.0.0/33", "to": "webservers", "ports": [80]}, "invalid CIDR '10.0.0.0/33'"),
    ({"name": "x", "from": "any", "ports": [80]}, "flow 'x': to: a flow needs a destination"),
    ({"name": "x", "from": "any", "to": [], "ports": [80]}, "flow 'x': to: a flow needs a destination"),
    ({"name": "x", "to": "webservers", "ports": [80]}, "flow 'x': from: a flow needs a source"),
    ({"name": "x", "from": "any", "to": "10.0.0.1", "ports": [80]}, "is an address; name groups or hosts"),
    ({"name": "x", "from": "any", "to": "webservers", "ports": [80], "port": 81}, "unknown field 'port'"),
    ({"name": "Bad Name", "from": "any", "to": "webservers", "ports": [80]}, "flow #1: name 'Bad Name'"),
    ({"from": "any", "to": "webservers", "ports": [80]}, "flow #1: name None"),
    ("not-a-mapping", "flow #1 must be a mapping"),
])
def test_bad_flows_are_refused_naming_the_field(flow, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        firewall_check_flows([flow], GROUPS)


def test_duplicate_names_are_refused():
    with pytest.raises(AnsibleFilterError, match="flow 'lb-to-web': duplicate name"):
        firewall_check_flows(POLICY + [POLICY[1]], GROUPS)


def test_policy_must_be_a_list():
    with pytest.raises(AnsibleFilterError, match="flows must be a list"):
        firewall_check_flows({"name": "x"}, GROUPS)


def test_host_without_ip_is_refused():
    hostvars = dict(HOSTVARS, **{"web-02": {"ansible_host": "web-02.example.org"}})
    with pytest.raises(AnsibleFilterError, match="host 'web-02' has no IP address"):
        firewall_host_rules(POLICY, "web-01", GROUPS, hostvars)


def test_bad_family_is_refused():
    with pytest.raises(AnsibleFilterError, match="family must be 4 or 6"):
        firewall_iptables([], 5)


@pytest.mark.parametrize("value, canonical", [(22, "22"), ("443", "443"), ("8000:8010", "8000:8010"),
                                              ("8000-8010", "8000:8010"), ("7:7", "7")])
def test_ports_are_canonical(value, canonical):
    assert parse_port(value, "t") == canonical


def test_filters_are_registered():
    compiler, ufw = set(FilterModule().filters()), set(UfwFilterModule().filters())
    assert not compiler & ufw
    assert compiler | ufw == {"firewall_check_flows", "firewall_host_rules",
                                             "firewall_iptables", "firewall_ufw_rules",
                                             "firewall_ufw_state", "firewall_ufw_changes", "firewall_ufw_commands",
                                             "firewall_ufw_before_rules"}


# --- properties ---------------------------------------------------------------------------

SOURCES = ["any", "loadbalancers", "webservers", "db_replica", "client", "lb-01", "10.1.0.0/16",
           "192.0.2.7", "2001:db8::/32"]
TARGETS = ["loadbalancers", "webservers", "db_primary", "web-02", "client"]

flow_strategy = st.fixed_dictionaries({
    "from": st.lists(st.sampled_from(SOURCES), min_size=1, max_size=3),
    "to": st.lists(st.sampled_from(TARGETS), min_size=1, max_size=2),
    "ports": st.lists(st.one_of(st.integers(1, 65535), st.sampled_from(["8000:8010", "53"])), min_size=1, max_size=3),
    "proto": st.sampled_from(["tcp", "udp"]),
})
policy_strategy = st.lists(flow_strategy, min_size=1, max_size=6).map(
    lambda flows: [dict(f, name=f"flow-{i}") for i, f in enumerate(flows)])


@settings(max_examples=150, deadline=None)
@given(policy=policy_strategy, seed=st.integers(0, 2**32 - 1), host=st.sampled_from(GROUPS["all"]))
def test_rendering_is_stable_under_reordering(policy, seed, host):
    """Shuffling flows, their sources and ports never changes the rendered rules."""
    rng = random.Random(seed)
    shuffled = [dict(f, **{"from": rng.sample(f["from"], len(f["from"])),
                           "ports": rng.sample(f["ports"], len(f["ports"]))}) for f in policy]
    rng.shuffle(shuffled)
    for family in (4, 6):
        assert (firewall_iptables(firewall_host_rules(policy, host, GROUPS, HOSTVARS), family)
                == firewall_iptables(firewall_host_rules(shuffled, host, GROUPS, HOSTVARS), family))


@settings(max_examples=150, deadline=None)
@given(policy=policy_strategy, host=st.sampled_from(GROUPS["all"]))
def test_every_allowed_flow_appears_exactly_once(policy, host):
    """Each (source, port, proto) a flow allows to this host is exactly one rule, naming the flow."""
    rules = firewall_host_rules(policy, host, GROUPS, HOSTVARS)
    assert len(keys(rules)) == len(set(keys(rules)))
    by_key = {k: r for k, r in zip(keys(rules), rules)}
    expected = set()
    for flow in policy:
        targets = {h for t in flow["to"] for h in (GROUPS.get(t) or [t])}
        if host not in targets:
            continue
        for src in flow["from"]:
            if src == "any":
                nets = ["0.0.0.0/0", "::/0"]
            elif src in GROUPS or src in HOSTVARS:
                members = GROUPS.get(src) or [src]
                nets = [str(ipaddress.ip_network(a)) for m in members
                        for a in HOSTVARS[m].get("firewall_addresses", [HOSTVARS[m]["ansible_host"]])]
            else:
                nets = [str(ipaddress.ip_network(src, strict=False))]
            for net in nets:
                for port in flow["ports"]:
                    key = (ipaddress.ip_network(net).version, flow["proto"], parse_port(port, "t"), net)
                    expected.add(key)
                    assert flow["name"] in by_key[key]["flows"]
    assert expected == set(by_key)
