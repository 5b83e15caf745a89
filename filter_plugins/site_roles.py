"""Which roles site.yml runs on a host, read from its plays: the one list of it.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def _play_groups(play, index):
    """The groups of a play's host pattern (a union, 'a:b'), or None for a templated pattern."""
    hosts = play.get("hosts")
    where = f"play {index + 1} ('{play.get('name', 'unnamed')}')"
    if not isinstance(hosts, str) or not hosts.strip():
        raise AnsibleFilterError(f"{where}: hosts must be a host pattern")
    if "{{" in hosts:
        return None
    parts = hosts.split(":")
    for part in parts:
        if not part or part[0] in "&!" or any(c in part for c in "*[]~"):
            raise AnsibleFilterError(
                f"{where}: hosts '{hosts}' must be a union of groups ('a:b'): the preflight reads no other pattern")
    return parts


IMPORT_ROLE = ("ansible.builtin.import_role", "import_role")


def _play_role_entries(play):
    """A play's role entries: its ``roles:``, then the ``import_role`` tasks of its ``tasks:`` (the
    static form site.yml uses, which can skip Ansible's second pass over an argument spec the
    preflight has checked). ``include_role`` tasks are dynamic and not read (the preflight's)."""
    entries = list(play.get("roles") or [])
    for task in play.get("tasks") or []:
        if isinstance(task, dict):
            for key in IMPORT_ROLE:
                if key in task:
                    entries.append(task[key])
    return entries


def _play_runs(play, run_tags, skip_tags):
    """Whether a play's tasks run under ``--tags run_tags --skip-tags skip_tags`` (Ansible's
    rules: ``always`` unless skipped by name, ``all``, ``tagged``, ``untagged``, ``never``); the
    roles here carry no tags of their own, so the play's decide."""
    tags = play.get("tags") or []
    tags = {tags} if isinstance(tags, str) else set(tags)
    if tags & set(skip_tags or []):
        return False
    if "always" in tags or run_tags is None:
        return True
    run = set(run_tags)
    return bool(("all" in run and "never" not in tags) or ("tagged" in run and tags)
                or ("untagged" in run and not tags) or tags & run)


def infra_site_roles(plays, group_names, run_tags=None, skip_tags=None):
    """The roles site.yml's plays run on a host in ``group_names``, in play order, each once.

    ``plays``: site.yml, parsed. A play's roles are its ``roles:`` entries (a name, or a mapping
    with ``role``) and its ``import_role`` tasks (a mapping with ``name``); its hosts a union of
    groups (``db_primary:db_replica``). Plays whose pattern is templated are left out (the backup
    hosts' play, outside ``servers``, includes its roles in tasks), and so are plays without
    either (the preflight, whose ``include_role`` tasks are not read). ``run_tags``, ``skip_tags``
    (Ansible's ``ansible_run_tags``, ``ansible_skip_tags``): only the plays this run's tags
    select (``--tags certs``: the certificates' play alone); None, every play. Raises
    AnsibleFilterError naming the play whose pattern or roles cannot be read.
    """
    if not isinstance(plays, list):
        raise AnsibleFilterError("the playbook must be a list of plays")
    if isinstance(group_names, str) or not isinstance(group_names, (list, tuple)):
        raise AnsibleFilterError("group_names must be a list of group names")
    for name, tags in (("run_tags", run_tags), ("skip_tags", skip_tags)):
        if tags is not None and (isinstance(tags, str) or not isinstance(tags, (list, tuple))):
            raise AnsibleFilterError(f"{name} must be a list of tags")
    found = []
    for index, play in enumerate(plays):
        entries = _play_role_entries(play) if isinstance(play, dict) else []
        if not entries:
            continue
        groups = _play_groups(play, index)
        if groups is None or not set(groups) & set(group_names) or not _play_runs(play, run_tags, skip_tags):
            continue
        for entry in entries:
            role = entry.get("role", entry.get("name")) if isinstance(entry, dict) else entry
            if not isinstance(role, str) or not role or "{{" in role:
                raise AnsibleFilterError(f"play {index + 1} ('{play.get('name', 'unnamed')}'): a role entry "
                                         f"names no role: {entry!r}")
            if role not in found:
                found.append(role)
    return found


class FilterModule:
    """site.yml's roles by host."""

    def filters(self):
        """The filters, by name."""
        return {"infra_site_roles": infra_site_roles}
