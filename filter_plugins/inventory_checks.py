"""Filters that check an inventory's shape before any host is touched.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DEFAULT_REQUIRED_GROUPS = ("loadbalancers", "webservers", "db_primary", "db_replica")


def infra_check_inventory(groups, required=DEFAULT_REQUIRED_GROUPS):
    """Check that the inventory has what site.yml needs; return the list of server names.

    ``groups`` is Ansible's ``groups`` magic variable (group name -> host names).
    Every group in ``required`` must exist and hold at least one host; ``db_primary``
    must hold exactly one host, and no host may be both primary and replica.

    Raises AnsibleFilterError naming the offending group.
    """
    if not isinstance(groups, dict):
        raise AnsibleFilterError(f"groups must be a mapping of group names to hosts, got {type(groups).__name__}")
    if isinstance(required, str) or not all(isinstance(g, str) for g in required):
        raise AnsibleFilterError("required must be a list of group names")
    for group in required:
        if group not in groups:
            raise AnsibleFilterError(f"inventory is missing the required group '{group}'")
        if not groups[group]:
            raise AnsibleFilterError(f"inventory group '{group}' has no hosts; it needs at least one")
    if "db_primary" in required and len(groups["db_primary"]) != 1:
        raise AnsibleFilterError(
            f"inventory group 'db_primary' must hold exactly one host, it holds {len(groups['db_primary'])}: "
            f"{', '.join(sorted(groups['db_primary']))}")
    if "db_primary" in required and "db_replica" in required:
        both = sorted(set(groups["db_primary"]) & set(groups["db_replica"]))
        if both:
            raise AnsibleFilterError(f"host '{both[0]}' is in both 'db_primary' and 'db_replica'")
    servers = []
    for group in required:
        for host in groups[group]:
            if host not in servers:
                servers.append(host)
    return servers


class FilterModule:
    """Inventory checks."""

    def filters(self):
        """The inventory filters, by name."""
        return {"infra_check_inventory": infra_check_inventory}
