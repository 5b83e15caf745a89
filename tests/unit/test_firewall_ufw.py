"""Unit tests of filter_plugins/firewall_ufw.py: the compiled rules as ufw arguments, ufw's state
read from its files, and the commands between them."""

import re

import pytest
from ansible.errors import AnsibleFilterError

from firewall import firewall_host_rules, firewall_ufw_before_rules
from firewall_ufw import firewall_ufw_changes, firewall_ufw_commands, firewall_ufw_rules, firewall_ufw_state
from test_firewall import GROUPS, HOSTVARS, POLICY


def test_ufw_rules_carry_a_stable_key():
    rules = firewall_ufw_rules(firewall_host_rules(POLICY, "lb-01", GROUPS, HOSTVARS))
    assert rules[0] == {"key": "tcp/80/0.0.0.0/0", "family": 4, "proto": "tcp", "to_port": "80",
                        "from_ip": "0.0.0.0/0", "comment": "https-to-lb"}


# What `grep -H` of ufw's files and `ufw status` print on a Debian 13 host (ufw 0.36.2) that
# has the policy's rules for lb-01 plus rules added by hand.
UFW_FILES = """\
/etc/default/ufw:IPV6=yes
/etc/default/ufw:DEFAULT_INPUT_POLICY="DROP"
/etc/default/ufw:DEFAULT_OUTPUT_POLICY="ACCEPT"
/etc/default/ufw:DEFAULT_FORWARD_POLICY="DROP"
/etc/ufw/ufw.conf:ENABLED=yes
/etc/ufw/ufw.conf:LOGLEVEL=low
/etc/ufw/user.rules:### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in comment=68747470732d746f2d6c62
/etc/ufw/user.rules:### tuple ### allow tcp 443 0.0.0.0/0 any 0.0.0.0/0 in comment=68747470732d746f2d6c62
/etc/ufw/user.rules:### tuple ### allow any 53 0.0.0.0/0 any 0.0.0.0/0 in
/etc/ufw/user.rules:### tuple ### allow any any 0.0.0.0/0 any 1.2.3.4 in_eth0
/etc/ufw/user.rules:### tuple ### deny tcp 25 0.0.0.0/0 any 5.6.7.8 in
/etc/ufw/user6.rules:### tuple ### allow tcp 80 ::/0 any ::/0 in comment=68747470732d746f2d6c62
/etc/ufw/user6.rules:### tuple ### allow tcp 443 ::/0 any ::/0 in comment=6f6c64
/etc/ufw/user6.rules:### tuple ### allow tcp 22 ::/0 any fd00::1 in
ufw-status:Status: active
"""
DEFAULTS = {"incoming": "deny", "routed": "deny", "outgoing": "allow"}


def test_ufw_state_reads_defaults_switches_and_plain_allow_rules():
    state = firewall_ufw_state(UFW_FILES)
    assert state["defaults"] == DEFAULTS
    assert (state["ipv6"], state["enabled"], state["active"], state["logging"]) == (True, True, True, "low")
    # Interface-bound and deny rules are not this role's: they are not listed, so never removed.
    assert [r["key"] for r in state["rules"]] == [
        "tcp/80/0.0.0.0/0", "tcp/443/0.0.0.0/0", "any/53/0.0.0.0/0", "tcp/80/::/0", "tcp/443/::/0",
        "tcp/22/fd00::1/128"]
    assert state["rules"][0]["comment"] == "https-to-lb"
    assert "to_port" not in firewall_ufw_state("/etc/ufw/user.rules:### tuple ### allow tcp any 0.0.0.0/0 "
                                               "any 10.0.0.0/8 in")["rules"][0]


def test_ufw_changes_are_only_what_differs():
    wanted = [r for r in firewall_ufw_rules(firewall_host_rules(POLICY, "lb-01", GROUPS, HOSTVARS))
              if r["to_port"] in ("80", "443")]
    todo = firewall_ufw_changes(firewall_ufw_state(UFW_FILES), wanted, DEFAULTS)
    assert todo["defaults"] == [] and not todo["enable"] and not todo["logging"]
    assert [r["key"] for r in todo["add"]] == ["tcp/443/::/0"]          # its comment differs
    assert [r["key"] for r in todo["remove"]] == ["any/53/0.0.0.0/0", "tcp/22/fd00::1/128"]
    assert "to_port" in todo["remove"][1] and todo["remove"][0]["proto"] == "any"


def test_ufw_changes_on_a_fresh_install():
    fresh = firewall_ufw_state(UFW_FILES.split("/etc/ufw/user.rules")[0].replace("ENABLED=yes", "ENABLED=no")
                               .replace('INPUT_POLICY="DROP"', 'INPUT_POLICY="ACCEPT"') + "ufw-status:Status: inactive")
    wanted = firewall_ufw_rules(firewall_host_rules(POLICY, "lb-01", GROUPS, HOSTVARS))
    todo = firewall_ufw_changes(fresh, wanted, DEFAULTS, logging="medium")
    assert todo["defaults"] == [{"direction": "incoming", "policy": "deny"}]
    assert todo["add"] == wanted and todo["remove"] == [] and todo["enable"] and todo["logging"]
    # Loaded at boot but switched off in ufw.conf, or enabled but not loaded: enable either way.
    assert firewall_ufw_changes(firewall_ufw_state("/etc/ufw/ufw.conf:ENABLED=yes"), [], {})["enable"]


def test_ufw_changes_leave_ipv6_rules_out_while_ufw_ipv6_is_off():
    wanted = firewall_ufw_rules(firewall_host_rules(POLICY, "lb-01", GROUPS, HOSTVARS))
    assert any(r["family"] == 6 for r in wanted)
    todo = firewall_ufw_changes(firewall_ufw_state("/etc/default/ufw:IPV6=no"), wanted, DEFAULTS)
    assert todo["add"] and all(r["family"] == 4 for r in todo["add"])


@pytest.mark.parametrize("state, defaults, message", [
    ("not parsed", DEFAULTS, "state must be the result of firewall_ufw_state"),
    ({"rules": []}, {"inbound": "deny"}, "defaults: inbound"),
    ({"rules": []}, {"incoming": "drop"}, "defaults: incoming: 'drop'"),
])
def test_ufw_changes_reject_bad_input(state, defaults, message):
    with pytest.raises(AnsibleFilterError, match=message):
        firewall_ufw_changes(state, [], defaults)
    with pytest.raises(AnsibleFilterError, match="ufw state must be text"):
        firewall_ufw_state(None)


VRRP = POLICY + [{"name": "vrrp", "from": "loadbalancers", "to": "loadbalancers", "proto": "vrrp"}]


def test_vrrp_goes_to_ufw_before_rules_not_to_its_commands():
    rules = firewall_host_rules(VRRP, "lb-01", GROUPS, HOSTVARS)
    assert not [r for r in firewall_ufw_rules(rules) if r["proto"] == "vrrp"]
    assert firewall_ufw_before_rules(rules, 4) == [
        '-A ufw-before-input -p 112 -s 172.30.10.10/32 -m comment --comment "vrrp" -j ACCEPT']
    assert firewall_ufw_before_rules(rules, 6) == [
        '-A ufw6-before-input -p 112 -s fd00:30::10/128 -m comment --comment "vrrp" -j ACCEPT']
    # A host no vrrp flow reaches has no such lines (the role then removes its block).
    assert firewall_ufw_before_rules(firewall_host_rules(VRRP, "web-01", GROUPS, HOSTVARS), 4) == []


def test_ufw_before_rules_refuse_an_unknown_family():
    with pytest.raises(AnsibleFilterError, match="family must be 4 or 6"):
        firewall_ufw_before_rules([], 5)


# What the read adds for the role's other tasks, on a host whose before.rules has the role's
# block (the vrrp flow of a load balancer pair), whose before6.rules has none, with
# netfilter-persistent still installed and an earlier version's rule record left.
UFW_EXTRA = """\
/etc/ufw/before.rules:# BEGIN infra-playbooks firewall: the policy's flows ufw has no command for
/etc/ufw/before.rules:-A ufw-before-input -p vrrp -s 172.30.10.9 -d 224.0.0.18 -j ACCEPT
/etc/ufw/before.rules:# END infra-playbooks firewall: the policy's flows ufw has no command for
package:iptables-persistent config-files
package:netfilter-persistent installed
present:/etc/ufw/infra-playbooks-rules.json
"""


def test_ufw_state_reads_the_before_blocks_the_packages_and_the_files_to_remove():
    state = firewall_ufw_state(UFW_FILES + UFW_EXTRA)
    assert state["before"] == {"before.rules": ["-A ufw-before-input -p vrrp -s 172.30.10.9 -d 224.0.0.18 -j ACCEPT"],
                               "before6.rules": None}
    # Removed with its configuration kept is not installed: apt has nothing to remove.
    assert state["packages"] == ["netfilter-persistent"]
    assert state["present"] == ["/etc/ufw/infra-playbooks-rules.json"]
    assert state["rules"] == firewall_ufw_state(UFW_FILES)["rules"]
    empty = firewall_ufw_state("/etc/ufw/before6.rules:# BEGIN infra-playbooks firewall: x\n"
                               "/etc/ufw/before6.rules:# END infra-playbooks firewall: x\n")
    assert empty["before"] == {"before.rules": None, "before6.rules": []}
    assert (empty["packages"], empty["present"]) == ([], [])


def test_the_tasks_read_and_write_the_block_the_filter_knows():
    """One marker: blockinfile writes it, the read's awk finds it, the filter parses it."""
    from pathlib import Path

    import yaml

    from firewall_ufw import UFW_BEFORE_FILES, UFW_BEFORE_MARKER
    tasks_dir = Path(__file__).parents[2] / "roles/firewall/tasks"
    tasks = yaml.safe_load((tasks_dir / "ufw.yml").read_text())
    block = next(t for t in tasks if "block" in t)["block"]
    read = next(t for t in block if t["name"].startswith("Read ufw's"))["ansible.builtin.raw"]
    # The writes are in the file ufw.yml includes where the read finds something to do.
    include = next(t for t in block if "ansible.builtin.include_tasks" in t)["ansible.builtin.include_tasks"]
    applied = yaml.safe_load((tasks_dir / include).read_text())
    write = next(t for t in applied if "ansible.builtin.blockinfile" in t)
    assert write["ansible.builtin.blockinfile"]["marker"].startswith(UFW_BEFORE_MARKER.format(mark="{mark}"))
    for mark in ("BEGIN", "END"):
        assert f"/^{UFW_BEFORE_MARKER.format(mark=mark)}/" in read
    assert sorted(item["file"] for item in write["loop"]) == sorted(UFW_BEFORE_FILES)
    assert all(f"/etc/ufw/{name}" in read for name in UFW_BEFORE_FILES)


def test_ufw_commands_add_before_they_remove_and_quote_every_argument():
    todo = firewall_ufw_changes(firewall_ufw_state(UFW_FILES), [
        {"key": "tcp/22/10.0.0.0/8", "family": 4, "proto": "tcp", "to_port": "22", "from_ip": "10.0.0.0/8",
         "comment": "ssh from admins; rm -rf /"}], {"incoming": "deny", "outgoing": "allow", "routed": "reject"}, "medium")
    lines = firewall_ufw_commands(todo, "medium")
    assert lines[0] == "ufw allow from 10.0.0.0/8 to any port 22 proto tcp comment 'ssh from admins; rm -rf /'"
    assert lines[1] == "ufw default reject routed"
    removes = [line for line in lines if line.startswith("ufw delete allow ")]
    assert removes and lines.index(removes[0]) > 1
    # A rule of any protocol is deleted as it was read; a delete carries no comment.
    assert "ufw delete allow from 0.0.0.0/0 to any port 53 proto any" in removes
    assert not any("comment" in line for line in removes)
    assert lines[-1] == "ufw logging medium"
    assert "ufw --force enable" not in lines and "ufw reload" not in lines


@pytest.mark.parametrize("enable, reload, expected", [
    (True, True, "ufw --force enable"), (False, True, "ufw reload"), (False, False, None)])
def test_ufw_commands_enable_or_reload_once(enable, reload, expected):
    todo = {"add": [], "remove": [], "defaults": [], "enable": enable, "logging": False}
    assert firewall_ufw_commands(todo, reload=reload) == ([expected] if expected else [])


def test_ufw_commands_in_check_mode_are_dry_runs():
    todo = {"add": [{"key": "k", "proto": "udp", "to_port": "53", "from_ip": "::/0", "comment": ""}],
            "remove": [{"key": "r", "proto": "tcp", "from_ip": "192.0.2.7/32", "comment": "by hand"}],
            "defaults": [{"direction": "incoming", "policy": "deny"}], "enable": True, "logging": True}
    lines = firewall_ufw_commands(todo, "low", dry_run=True)
    # A rule without a port (read as any) is deleted without one.
    # ufw honours --dry-run for rules alone (its logging command writes its setting even then):
    # the other commands are said, not run.
    assert lines == ["ufw --dry-run allow from ::/0 to any port 53 proto udp",
                     "echo 'would run: ufw default deny incoming'",
                     "ufw --dry-run delete allow from 192.0.2.7/32 to any proto tcp",
                     "echo 'would run: ufw --force enable'", "echo 'would run: ufw logging low'"]


@pytest.mark.parametrize("todo, logging, named", [
    ({"add": []}, "low", "todo must be the result of firewall_ufw_changes"),
    ({"add": [], "remove": [], "defaults": [], "enable": False, "logging": True}, "loud", "firewall_ufw_logging: 'loud'"),
    ({"add": [{"key": "tcp/80/", "proto": "tcp", "to_port": "80", "from_ip": ""}], "remove": [], "defaults": [],
      "enable": False, "logging": False}, "low", "add: rule 'tcp/80/' has no from_ip"),
    ({"add": [], "remove": [], "defaults": [{"direction": "sideways", "policy": "deny"}], "enable": False,
      "logging": False}, "low", "defaults: "),
])
def test_ufw_commands_refuse_what_is_not_a_command_naming_it(todo, logging, named):
    with pytest.raises(AnsibleFilterError, match=re.escape(named)):
        firewall_ufw_commands(todo, logging)
