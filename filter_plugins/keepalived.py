"""The load balancers' VRRP pair (keepalived): each node's part, checked against the inventory.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

PRIORITY_RANGE = (1, 254)  # 255 is the address owner's, which a floating address has none of
PASSWORD_MAX = 8  # VRRPv2 simple authentication keeps 8 characters and drops the rest
PRIORITY_STEP = 10


def _address(host, hostvars):
    """A node's address on the VRRP network: keepalived_address, else its IP ansible_host."""
    hv = hostvars.get(host, {})
    text = hv.get("keepalived_address", hv.get("ansible_host"))
    try:
        return ipaddress.ip_address(str(text))
    except ValueError:
        raise AnsibleFilterError(
            f"load balancer '{host}' has no IP address for VRRP: set keepalived_address, or an IP "
            f"ansible_host (got {text!r})") from None


def _priority(host, hostvars, default):
    """A node's priority: its keepalived_priority, else ``default``; checked in range."""
    value = hostvars.get(host, {}).get("keepalived_priority", default)
    if isinstance(value, bool) or not isinstance(value, int) and not str(value).isdigit():
        raise AnsibleFilterError(f"keepalived_priority of '{host}': {value!r} is not a whole number")
    value = int(value)
    if not PRIORITY_RANGE[0] <= value <= PRIORITY_RANGE[1]:
        raise AnsibleFilterError(f"keepalived_priority of '{host}': {value} is out of range "
                                 f"{PRIORITY_RANGE[0]}-{PRIORITY_RANGE[1]}")
    return value


def infra_keepalived_nodes(hosts, hostvars, vip, password, nopreempt=False):
    """Each load balancer's VRRP settings: {host: {address, priority, state, peers}}.

    ``hosts``: the load balancers (at least two: a pair needs a peer). ``vip``: the virtual
    address with its prefix (``keepalived_vip``), inside every node's network and none's own
    address. ``password``: VRRP's shared secret (``keepalived_password``), 1-8 characters.
    Priorities: each node's ``keepalived_priority``, else the group's order (the first the
    highest). Without ``nopreempt`` the highest priority must be one node's alone (it starts
    MASTER and takes the address back when it returns), and no two nodes may share a priority;
    with it, every node starts BACKUP and whoever holds the address keeps it until it fails. Peers are the other nodes' addresses (unicast: no
    multicast needed). Raises AnsibleFilterError naming the field.
    """
    if isinstance(hosts, str) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("the load balancers must be a list of inventory hosts")
    if len(hosts) < 2:
        raise AnsibleFilterError(
            f"a VRRP pair needs at least two load balancers, the group has {len(hosts)} "
            f"({', '.join(hosts) or 'none'}): add a peer, or leave keepalived_vip empty (no floating address)")
    try:
        network = ipaddress.ip_interface(str(vip))
    except ValueError:
        raise AnsibleFilterError(f"keepalived_vip: {vip!r} is not an address with its prefix "
                                 "(e.g. 192.0.2.100/24)") from None
    if "/" not in str(vip):
        raise AnsibleFilterError(f"keepalived_vip: {vip} needs its prefix length (e.g. {vip}/24)")
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("keepalived_password is empty: set VRRP's shared secret (from the vault)")
    if len(password) > PASSWORD_MAX:
        raise AnsibleFilterError(f"keepalived_password: VRRP keeps only {PASSWORD_MAX} characters, "
                                 f"this one has {len(password)}")
    nodes = {}
    for index, host in enumerate(hosts):
        address = _address(host, hostvars)
        if address.version != network.version or address not in network.network:
            raise AnsibleFilterError(f"keepalived_vip {vip} is outside the network of load balancer "
                                     f"'{host}' ({address}): the address can only move within one network")
        if address == network.ip:
            raise AnsibleFilterError(f"keepalived_vip {network.ip} is the address of load balancer '{host}'")
        default = PRIORITY_RANGE[1] - 4 - PRIORITY_STEP * index
        nodes[host] = {"address": str(address), "priority": _priority(host, hostvars, max(default, 1))}
    if not nopreempt:
        for priority in sorted({node["priority"] for node in nodes.values()}, reverse=True):
            sharing = [host for host, node in nodes.items() if node["priority"] == priority]
            if len(sharing) > 1:
                raise AnsibleFilterError(
                    f"keepalived_priority: {' and '.join(sharing)} share the priority {priority}: without "
                    "keepalived_nopreempt the order must be clear (give each its own), or set keepalived_nopreempt: true")
    leader = max(nodes, key=lambda host: nodes[host]["priority"])
    for host, node in nodes.items():
        node["state"] = "MASTER" if not nopreempt and host == leader else "BACKUP"
        node["peers"] = [other["address"] for name, other in nodes.items() if name != host]
    return nodes


class FilterModule:
    """keepalived filters."""

    def filters(self):
        """The filters, by name."""
        return {"infra_keepalived_nodes": infra_keepalived_nodes}
