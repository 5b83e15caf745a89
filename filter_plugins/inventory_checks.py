"""Filters that check an inventory's shape before any host is touched."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DEFAULT_REQUIRED_GROUPS = ("loadbalancers", "webservers", "db_primary", "db_replica")
DEFAULT_PARENT_GROUP = "servers"


def infra_check_inventory(groups, required=DEFAULT_REQUIRED_GROUPS, parent=DEFAULT_PARENT_GROUP):
    """Check that the inventory has what site.yml needs; return the list of server names.

    ``groups`` is Ansible's ``groups`` magic variable (group name -> host names).
    Every group in ``required`` must exist and hold at least one host, and every host of
    them must be in ``parent``, the group site.yml's plays run on (a host left out of it
    would get its role but not the baseline, firewall or certificates). ``db_primary``
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
    if not isinstance(parent, str) or not parent:
        raise AnsibleFilterError("parent must be the name of the group of all servers")
    if parent not in groups:
        raise AnsibleFilterError(
            f"inventory is missing the group '{parent}' (its children: {', '.join(required)}): "
            "site.yml's plays run on it")
    servers = []
    for group in required:
        for host in groups[group]:
            if host not in groups[parent]:
                raise AnsibleFilterError(
                    f"host '{host}' of group '{group}' is not in the group '{parent}': "
                    f"make '{group}' a child of '{parent}'")
            if host not in servers:
                servers.append(host)
    return servers


class FilterModule:
    """Inventory checks."""

    def filters(self):
        return {"infra_check_inventory": infra_check_inventory}
