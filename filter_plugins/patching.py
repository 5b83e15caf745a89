"""Filters for Debian's apt: which mirror a server uses, which security updates are pending,
and the order in which a rolling update patches the servers.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

_ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", re.M)
_STANZA_FIELD = re.compile(r"^(URIs|Suites|Types|Enabled):\s*(.*)$", re.I)
# apt-get -s prints: Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])
_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) (.*)\)", re.M)


def _sources(text):
    """(uri, suite) pairs of every enabled `deb` entry in one-line and deb822 sources text, in order."""
    if not isinstance(text, str):
        raise AnsibleFilterError(f"apt sources must be text, got {type(text).__name__}")
    pairs = []
    for stanza in re.split(r"\n\s*\n", text):
        pairs += _ONE_LINE.findall(stanza)
        fields = {}
        for line in stanza.splitlines():
            match = _STANZA_FIELD.match(line.strip())
            if match:
                fields[match.group(1).lower()] = match.group(2).split()
        if "uris" not in fields or "deb" not in fields.get("types", ["deb"]):
            continue
        if fields.get("enabled", ["yes"])[0].lower() == "no":
            continue
        pairs += [(uri, suite) for uri in fields["uris"] for suite in fields.get("suites", [""])]
    return pairs


def infra_apt_mirrors(text):
    """The Debian mirror and security mirror a server's apt sources name.

    ``text`` is the content of ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/debian.sources``
    (either may be empty). The mirror is the first source whose suite is not a ``-security``
    one; the security mirror is the first ``-security`` source, or else the mirror's address
    with its last path element followed by ``-security`` (``.../debian`` -> ``.../debian-security``,
    the layout of Debian's own mirror network).

    Returns ``{'mirror': url, 'security': url}``. Raises AnsibleFilterError when no Debian
    source is found (set ``common_apt_mirror`` then).
    """
    pairs = _sources(text)
    mirrors = [uri for uri, suite in pairs if not suite.endswith("-security")]
    security = [uri for uri, suite in pairs if suite.endswith("-security")]
    if not mirrors:
        raise AnsibleFilterError("no Debian mirror found in the server's apt sources: set common_apt_mirror")
    mirror = mirrors[0].rstrip("/")
    return {"mirror": mirror, "security": security[0].rstrip("/") if security else mirror + "-security"}


def infra_check_regexes(values, field):
    """Check that ``values`` is a list of regular expressions; return it unchanged.

    ``field`` is the variable's name, for the message. Raises AnsibleFilterError naming it.
    """
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise AnsibleFilterError(f"{field} must be a list of regular expressions, got {values!r}")
    for value in values:
        if not isinstance(value, str) or not value:
            raise AnsibleFilterError(f"{field}: {value!r} is not a regular expression")
        try:
            re.compile(value)
        except re.error as err:
            raise AnsibleFilterError(f"{field}: '{value}' is not a regular expression: {err}") from err
    return values


def infra_apt_pending_security(text, hold=()):
    """Packages `apt-get -s upgrade` (``text``, its output) would take from the security suite.

    ``hold`` lists regular expressions matched at the start of a package name, as
    unattended-upgrades matches its ``Package-Blacklist``: those packages are left out (they
    wait for the rolling update). Returns the sorted package names.
    """
    if not isinstance(text, str):
        raise AnsibleFilterError(f"apt-get output must be text, got {type(text).__name__}")
    patterns = [re.compile(h) for h in infra_check_regexes(hold, "hold")]
    pending = set()
    for name, _version, origin in _INST.findall(text):
        if "-security" in origin.lower() or "debian-security" in origin.lower():
            if not any(p.match(name) for p in patterns):
                pending.add(name)
    return sorted(pending)


def infra_rolling_update_order(groups, only=None):
    """The servers in the order playbooks/rolling-update.yml patches them.

    Database replicas first (a replica restarts without a write outage), then the web
    servers that hold no database, then the primary (after a planned switchover), and the
    load balancers last. A host in several groups appears once, at its first place.
    ``only`` restricts the result to the hosts of these groups (None: every server).

    Raises AnsibleFilterError naming an unknown group in ``only``.
    """
    if not isinstance(groups, dict):
        raise AnsibleFilterError("groups must be a mapping of group names to hosts")
    stages = ("db_replica", "webservers", "db_primary", "loadbalancers")
    if only is not None:
        if isinstance(only, str) or not all(isinstance(g, str) for g in only):
            raise AnsibleFilterError("rolling_update_groups must be a list of group names")
        unknown = [g for g in only if g not in stages]
        if unknown:
            raise AnsibleFilterError(
                f"rolling_update_groups: unknown group '{unknown[0]}' (expected some of {', '.join(stages)})")
        if not only:
            raise AnsibleFilterError("rolling_update_groups must name at least one group")
    chosen = {h for g in (only if only is not None else stages) for h in groups.get(g, [])}
    primary = set(groups.get("db_primary", []))
    order = []
    for stage in stages:
        for host in groups.get(stage, []):
            if host in order or host not in chosen:
                continue
            if stage == "webservers" and host in primary:
                continue  # the primary goes after the replicas and the other web servers
            order.append(host)
    return order


class FilterModule:
    """apt and patching filters."""

    def filters(self):
        """The apt and patching filters, by name."""
        return {
            "infra_apt_mirrors": infra_apt_mirrors,
            "infra_apt_pending_security": infra_apt_pending_security,
            "infra_check_regexes": infra_check_regexes,
            "infra_rolling_update_order": infra_rolling_update_order,
        }
