"""Filters that check an inventory's shape before any host is touched.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

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
    if "db_primary" in required and "db_replica" in required:
        infra_check_db_groups(groups)
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


def infra_check_db_groups(groups, primary_group="db_primary", replica_group="db_replica"):
    """Check the database groups; return {'primary': host, 'replicas': [sorted hosts]}.

    The primary group must hold exactly one host, the replica group at least one, and no
    host may be in both. Used by infra_check_inventory for the site's groups and by the mysql
    role for the groups it is given (mysql_primary_group, mysql_replica_group).

    Raises AnsibleFilterError naming the group.
    """
    if not isinstance(groups, dict):
        raise AnsibleFilterError(f"groups must be a mapping of group names to hosts, got {type(groups).__name__}")
    primaries = list(groups.get(primary_group) or [])
    replicas = list(groups.get(replica_group) or [])
    if len(primaries) != 1:
        raise AnsibleFilterError(
            f"inventory group '{primary_group}' must hold exactly one host, "
            f"it holds {len(primaries)} ({', '.join(sorted(primaries)) or 'none'})")
    if not replicas:
        raise AnsibleFilterError(f"inventory group '{replica_group}' has no hosts; it needs at least one replica")
    both = sorted(set(primaries) & set(replicas))
    if both:
        raise AnsibleFilterError(f"host '{both[0]}' is in both '{primary_group}' and '{replica_group}'")
    return {"primary": primaries[0], "replicas": sorted(replicas)}


class FilterModule:
    """Inventory checks."""

    def filters(self):
        """The inventory filters, by name."""
        return {"infra_check_inventory": infra_check_inventory, "infra_check_db_groups": infra_check_db_groups}
