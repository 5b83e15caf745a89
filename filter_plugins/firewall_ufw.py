"""ufw's side of the firewall role: the compiled rules as community.general.ufw arguments, ufw's
state read from its files, and the few ufw commands that take one to the other.

The rules come from firewall.py's firewall_host_rules (the policy compiler); nothing here
knows about flows, groups or hosts. Pure functions; bad input raises AnsibleFilterError.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

import ipaddress
import re
import shlex

from ansible.errors import AnsibleFilterError


def _ufw_key(proto, port, source):
    """The key a rule is known by on both sides of the comparison: the policy's rules and the
    rules read back from ufw's files (firewall_ufw_changes matches them by it)."""
    return f"{proto}/{port}/{source}"


def firewall_ufw_rules(rules):
    """Rules as arguments of community.general.ufw, each with a stable `key` and its family
    (the rules of a protocol without ports, vrrp, which ufw has no command for, are left to
    firewall_ufw_before_rules in firewall.py)."""
    out = []
    for rule in rules:
        if not rule["port"]:
            continue
        out.append({
            "key": _ufw_key(rule["proto"], rule["port"], rule["source"]), "family": rule["family"],
            "proto": rule["proto"], "to_port": rule["port"], "from_ip": rule["source"],
            "comment": ",".join(rule["flows"])[:200],
        })
    return out


# How ufw writes "anywhere" as a rule's destination in its tuples, per family.
UFW_ANYWHERE = ("0.0.0.0/0", "::/0")
UFW_POLICIES = {"DROP": "deny", "ACCEPT": "allow", "REJECT": "reject"}
UFW_DEFAULTS = {"DEFAULT_INPUT_POLICY": "incoming", "DEFAULT_OUTPUT_POLICY": "outgoing",
                "DEFAULT_FORWARD_POLICY": "routed"}
# The role's block in ufw's before.rules files (rules ufw has no command for: vrrp), its markers.
UFW_BEFORE_FILES = ("before.rules", "before6.rules")
UFW_BEFORE_MARKER = "# {mark} infra-playbooks firewall"
UFW_TUPLE = re.compile(r"### tuple ### (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+)(?: comment=([0-9a-fA-F]*))?\s*$")


def _ufw_tuple(line):
    """One `### tuple ###` line of ufw's user rules as a rule dict, or None for a rule this role
    does not manage (not a plain "allow in", or bound to an interface or application)."""
    match = UFW_TUPLE.fullmatch(line.strip())
    if not match:
        return None
    action, proto, dport, dst, sport, src, direction, comment = match.groups()
    try:
        network = ipaddress.ip_network(src, strict=False)
    except ValueError:
        return None
    if action != "allow" or direction != "in" or sport != "any" or dst not in UFW_ANYWHERE:
        return None
    source = str(network)
    try:
        text = bytes.fromhex(comment or "").decode("utf-8", "replace")
    except ValueError:
        text = ""
    rule = {"key": _ufw_key(proto, dport, source), "family": network.version, "proto": proto,
            "from_ip": source, "comment": text}
    if dport != "any":
        rule["to_port"] = dport
    return rule


def firewall_ufw_state(text):
    """ufw's state from `grep -H` of its files plus a `ufw-status:` line.

    Reads /etc/default/ufw (IPV6, DEFAULT_*_POLICY), /etc/ufw/ufw.conf (ENABLED, LOGLEVEL),
    /etc/ufw/user.rules and user6.rules (the `### tuple ###` lines) and the first line of
    `ufw status` (whether the rules are loaded now). Also, for the role's other tasks: the
    lines of its block in before.rules and before6.rules (markers included, as
    `/etc/ufw/before.rules:LINE`), `package:NAME STATUS` lines (dpkg's status of packages that
    must go) and `present:PATH` lines (files that must go). Returns ``{defaults, ipv6, enabled,
    active, logging, rules, before, packages, present}``: ``before`` maps a file's name to its
    block's lines, or None without a block; ``packages`` lists those installed; ``present`` the
    paths found. Reading files is cheap, where every ufw command reloads the firewall.
    """
    if not isinstance(text, str):
        raise AnsibleFilterError(f"ufw state must be text, got {type(text).__name__}")
    state = {"defaults": {}, "ipv6": None, "enabled": False, "active": False, "logging": None, "rules": [],
             "before": {name: None for name in UFW_BEFORE_FILES}, "packages": [], "present": []}
    inside = None
    for line in text.splitlines():
        source, sep, content = line.partition(":")
        if not sep:
            continue
        name, _, value = content.partition("=")
        value = value.strip().strip('"')
        base = source.rsplit("/", 1)[-1]
        if base in UFW_BEFORE_FILES and source.startswith("/etc/ufw/"):
            if content.startswith(UFW_BEFORE_MARKER.format(mark="BEGIN")):
                state["before"][base], inside = [], base
            elif content.startswith(UFW_BEFORE_MARKER.format(mark="END")):
                inside = None
            elif inside == base:
                state["before"][base].append(content)
        elif source == "package":
            package, _, status = content.partition(" ")
            if status.strip() == "installed":
                state["packages"].append(package)
        elif source == "present":
            state["present"].append(content)
        elif source == "ufw-status":
            state["active"] = content.strip() == "Status: active"
        elif content.startswith("### tuple ###"):
            rule = _ufw_tuple(content)
            if rule:
                state["rules"].append(rule)
        elif name in UFW_DEFAULTS:
            state["defaults"][UFW_DEFAULTS[name]] = UFW_POLICIES.get(value, value.lower())
        elif name == "IPV6":
            state["ipv6"] = value == "yes"
        elif name == "ENABLED":
            state["enabled"] = value == "yes"
        elif name == "LOGLEVEL":
            state["logging"] = value
    return state


def firewall_ufw_changes(state, wanted, defaults, logging="low"):
    """What ufw commands a host needs: only those, since each one reloads the firewall.

    ``state`` is firewall_ufw_state's result, ``wanted`` firewall_ufw_rules', ``defaults`` the
    policy per direction (incoming, outgoing, routed). Returns ``{defaults: [{direction, policy}],
    add: [rules missing or with another comment], remove: [plain "allow in" rules no flow
    asks for], enable: bool, logging: bool}``. IPv6 rules are left out while ufw's IPV6 is off.
    """
    if not isinstance(state, dict) or "rules" not in state:
        raise AnsibleFilterError("state must be the result of firewall_ufw_state")
    for direction, policy in defaults.items():
        if direction not in UFW_DEFAULTS.values() or policy not in UFW_POLICIES.values():
            raise AnsibleFilterError(f"defaults: {direction}: {policy!r} is not allow, deny or reject "
                                     "for incoming, outgoing or routed")
    if state["ipv6"] is False:
        wanted = [rule for rule in wanted if rule["family"] != 6]
    have = {rule["key"]: rule for rule in state["rules"]}
    wanted_keys = {rule["key"] for rule in wanted}
    return {
        "defaults": [{"direction": direction, "policy": policy} for direction, policy in sorted(defaults.items())
                     if state["defaults"].get(direction) != policy],
        "add": [rule for rule in wanted
                if rule["key"] not in have or have[rule["key"]]["comment"] != rule["comment"]],
        "remove": [rule for key, rule in have.items() if key not in wanted_keys],
        "enable": not (state["enabled"] and state["active"]),
        "logging": state["logging"] != ("low" if logging == "on" else logging),
    }


UFW_LOG_LEVELS = ("on", "off", "low", "medium", "high", "full")


def firewall_ufw_commands(todo, logging="low", reload=False, dry_run=False):
    """The ufw command lines that apply firewall_ufw_changes' result, for one shell call.

    Each line is what community.general.ufw would run for the same rule (``ufw [delete] allow
    from SOURCE to any [port PORT] proto PROTO [comment TEXT]``, arguments shell-quoted), in an
    order that never leaves the host with fewer allow rules than it ends with: the rules to add
    first, then the default policies, then the rules to remove; then ``--force enable`` where
    ufw is off, else ``reload`` where ``reload`` (a file ufw reads at load changed); then the
    logging level. ``dry_run`` (check mode): the rules' lines with ``--dry-run``, which ufw
    honours for rules alone (its ``logging`` command writes its setting even then), and the
    others as an ``echo`` of what a real run would do, as community.general.ufw leaves them to
    its own comparison in check mode. Nothing to do: [].
    """
    if not isinstance(todo, dict) or not {"add", "remove", "defaults", "enable", "logging"} <= set(todo):
        raise AnsibleFilterError("todo must be the result of firewall_ufw_changes")
    if logging not in UFW_LOG_LEVELS:
        raise AnsibleFilterError(f"firewall_ufw_logging: {logging!r} is not one of {', '.join(UFW_LOG_LEVELS)}")
    ufw = "ufw --dry-run" if dry_run else "ufw"

    def other(command):
        return "echo " + shlex.quote(f"would run: ufw {command}") if dry_run else f"ufw {command}"

    def rule(item, delete=False):
        for field in ("from_ip", "proto"):
            if not str(item.get(field) or "").strip():
                raise AnsibleFilterError(f"{'remove' if delete else 'add'}: rule {item.get('key', item)!r} has no {field}")
        words = [ufw] + (["delete"] if delete else []) + ["allow", "from", shlex.quote(str(item["from_ip"])), "to", "any"]
        if item.get("to_port") not in (None, ""):
            words += ["port", shlex.quote(str(item["to_port"]))]
        words += ["proto", shlex.quote(str(item["proto"]))]
        if item.get("comment") and not delete:
            words += ["comment", shlex.quote(str(item["comment"]))]
        return " ".join(words)

    lines = [rule(item) for item in todo["add"]]
    for item in todo["defaults"]:
        if item.get("direction") not in UFW_DEFAULTS.values() or item.get("policy") not in UFW_POLICIES.values():
            raise AnsibleFilterError(f"defaults: {item!r} is not a policy (allow, deny, reject) for incoming, outgoing or routed")
        lines.append(other(f"default {item['policy']} {item['direction']}"))
    lines += [rule(item, delete=True) for item in todo["remove"]]
    if todo["enable"]:
        lines.append(other("--force enable"))
    elif reload:
        lines.append(other("reload"))
    if todo["logging"]:
        lines.append(other(f"logging {logging}"))
    return lines


class FilterModule:
    """ufw filters."""

    def filters(self):
        """ufw's filters, by name."""
        return {
            "firewall_ufw_rules": firewall_ufw_rules,
            "firewall_ufw_state": firewall_ufw_state,
            "firewall_ufw_changes": firewall_ufw_changes,
            "firewall_ufw_commands": firewall_ufw_commands,
        }
