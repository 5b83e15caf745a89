"""Turn one declarative traffic policy into each host's firewall rules.

A policy is a list of *flows*, each a mapping::

    name:  web-https-from-lb      # unique, lower-case letters, digits, - and _
    from:  [loadbalancers]        # groups, hosts, CIDRs, or "any"
    to:    [webservers]           # groups or hosts: the hosts whose firewall opens
    ports: [443, "8000:8010"]     # ports or ranges (none for vrrp)
    proto: tcp                    # tcp (default), udp, or vrrp (IP protocol 112, no ports)
    comment: optional free text

The filters are pure functions of (policy, inventory groups, host variables): they resolve
names to addresses (IPv4 and IPv6), merge and de-duplicate, order the result deterministically
and render it for a backend (iptables here; ufw's arguments and state in firewall_ufw.py). Bad
input raises AnsibleFilterError naming the flow and the field.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

FLOW_KEYS = {"name", "from", "to", "ports", "proto", "comment"}
PROTOCOLS = ("tcp", "udp", "vrrp")
PORTLESS = {"vrrp": 112}  # protocols without ports, with their IP protocol number
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
ANY = ("0.0.0.0/0", "::/0")


def _as_list(value, where):
    """A single string or a list of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value):
        return list(value)
    raise AnsibleFilterError(f"{where} must be a string or a list of strings, got {value!r}")


def _cidr(text):
    """The network for a CIDR or bare IP literal, or None if text is not one."""
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return None


def _looks_like_address(text):
    """Whether text is written like an IPv4 or IPv6 address or CIDR (valid or not)."""
    return bool(re.fullmatch(r"[0-9.]+(/\d+)?|[0-9a-fA-F:]*:[0-9a-fA-F:.]*(/\d+)?", str(text)))


def parse_port(value, where):
    """Check a port (1-65535) or range "LOW:HIGH"; return it as a canonical string."""
    if isinstance(value, bool):
        raise AnsibleFilterError(f"{where}: port {value!r} is not a number")
    text = str(value).strip()
    match = re.fullmatch(r"(\d+)(?:[:-](\d+))?", text)
    if not match:
        raise AnsibleFilterError(f"{where}: port {value!r} is not a number or a range LOW:HIGH")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise AnsibleFilterError(f"{where}: port {port} is out of range 1-65535")
    if high < low:
        raise AnsibleFilterError(f"{where}: port range {text} runs backwards")
    return str(low) if low == high else f"{low}:{high}"


def host_addresses(host, hostvars):
    """A host's firewall addresses: `firewall_addresses`, else an IP `ansible_host`."""
    hv = hostvars.get(host, {})
    addresses = hv.get("firewall_addresses")
    if addresses is None:
        ansible_host = hv.get("ansible_host", host)
        if _cidr(ansible_host) is None or "/" in str(ansible_host):
            raise AnsibleFilterError(
                f"host '{host}' has no IP address: set firewall_addresses, or an IP ansible_host "
                f"(got '{ansible_host}')")
        addresses = [ansible_host]
    nets = []
    for addr in _as_list(addresses, f"host '{host}': firewall_addresses"):
        net = _cidr(addr)
        if net is None:
            raise AnsibleFilterError(f"host '{host}': firewall_addresses entry '{addr}' is not an IP address")
        nets.append(net)
    return nets


def resolve_hosts(names, groups, where):
    """Group and host names to a sorted list of host names."""
    all_hosts = set(groups.get("all", []))
    for members in groups.values():
        all_hosts.update(members)
    hosts = set()
    for name in names:
        if name in groups:
            hosts.update(groups[name])
        elif name in all_hosts:
            hosts.add(name)
        else:
            raise AnsibleFilterError(f"{where}: unknown group or host '{name}'")
    return sorted(hosts)


def resolve_sources(names, groups, hostvars, where):
    """Sources (any, CIDRs, groups, hosts) to a sorted list of networks, de-duplicated."""
    nets = set()
    for name in names:
        name = str(name)
        if name == "any":
            nets.update(ipaddress.ip_network(n) for n in ANY)
        elif _looks_like_address(name):
            net = _cidr(name)
            if net is None:
                raise AnsibleFilterError(f"{where}: invalid CIDR '{name}'")
            nets.add(net)
        else:
            for host in resolve_hosts([name], groups, where):
                nets.update(host_addresses(host, hostvars))
    return sorted(nets, key=lambda n: (n.version, n.network_address, n.prefixlen))


def firewall_check_flows(flows, groups):
    """Validate a policy against the inventory; return it normalised.

    Normalised flows have every key, `from`/`to`/`ports` as lists, ports as canonical strings
    and `proto` lower-case. Raises AnsibleFilterError naming the flow and field at fault.
    """
    if not isinstance(flows, (list, tuple)):
        raise AnsibleFilterError(f"firewall flows must be a list, got {type(flows).__name__}")
    if not isinstance(groups, dict):
        raise AnsibleFilterError("groups must be Ansible's groups mapping")
    seen = set()
    result = []
    for index, flow in enumerate(flows):
        where = f"flow #{index + 1}"
        if not isinstance(flow, dict):
            raise AnsibleFilterError(f"{where} must be a mapping, got {flow!r}")
        name = flow.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise AnsibleFilterError(f"{where}: name {name!r} must be lower-case letters, digits, - and _")
        where = f"flow '{name}'"
        if name in seen:
            raise AnsibleFilterError(f"{where}: duplicate name (flow names must be unique)")
        seen.add(name)
        unknown = sorted(set(flow) - FLOW_KEYS)
        if unknown:
            raise AnsibleFilterError(f"{where}: unknown field '{unknown[0]}' (known: {', '.join(sorted(FLOW_KEYS))})")
        if not flow.get("to"):
            raise AnsibleFilterError(f"{where}: to: a flow needs a destination (groups or hosts)")
        if not flow.get("from"):
            raise AnsibleFilterError(f"{where}: from: a flow needs a source (groups, hosts, CIDRs or any)")
        proto = str(flow.get("proto", "tcp")).lower()
        if proto not in PROTOCOLS:
            raise AnsibleFilterError(f"{where}: proto: unknown protocol '{flow.get('proto')}' (use tcp, udp or vrrp)")
        ports = flow.get("ports")
        if proto in PORTLESS:
            if ports not in (None, [], ""):
                raise AnsibleFilterError(f"{where}: ports: {proto} has no ports (leave ports out)")
            ports = []
        elif ports in (None, [], ""):
            raise AnsibleFilterError(f"{where}: ports: at least one port is needed")
        ports = ports if isinstance(ports, (list, tuple)) else [ports]
        to = _as_list(flow["to"], f"{where}: to")
        sources = _as_list(flow["from"], f"{where}: from")
        for target in to:
            if _looks_like_address(target):
                raise AnsibleFilterError(f"{where}: to: '{target}' is an address; name groups or hosts")
        resolve_hosts(to, groups, f"{where}: to")
        for source in sources:
            if str(source) != "any" and not _looks_like_address(source):
                resolve_hosts([source], groups, f"{where}: from")
            elif _looks_like_address(source) and _cidr(source) is None:
                raise AnsibleFilterError(f"{where}: from: invalid CIDR '{source}'")
        result.append({
            "name": name, "from": [str(s) for s in sources], "to": to, "proto": proto,
            "ports": [parse_port(p, f"{where}: ports") for p in ports],
            "comment": str(flow.get("comment", "")),
        })
    return result


def _port_key(port):
    """Sort key of a canonical port or range: (low, high) as numbers; (0, 0) for none."""
    low, _, high = port.partition(":")
    return (int(low or 0), int(high or low or 0))


def firewall_host_rules(flows, host, groups, hostvars, always_ssh_from=(), ssh_port=22):
    """The rules of one host: what may reach it, from where, on which port.

    Returns a list of ``{family, proto, port, source, flows}`` (flows: the names of the
    flows behind the rule), one per (family, proto, port, source), sorted; ``port`` is ""
    for a protocol without ports (vrrp). SSH from every
    entry of ``always_ssh_from`` (admin networks, the controller) is always included, under
    the flow name ``always-ssh``, so a policy that forgets SSH cannot lock the operator out.
    """
    flows = firewall_check_flows(flows, groups)
    if not isinstance(hostvars, dict) and not hasattr(hostvars, "get"):
        raise AnsibleFilterError("hostvars must be Ansible's hostvars mapping")
    rules = {}

    def add(flow_name, proto, port, net):
        """Record that flow_name opens port/proto to net."""
        key = (net.version, proto, port, str(net))
        rules.setdefault(key, set()).add(flow_name)

    for flow in flows:
        where = f"flow '{flow['name']}'"
        if host not in resolve_hosts(flow["to"], groups, f"{where}: to"):
            continue
        for net in resolve_sources(flow["from"], groups, hostvars, f"{where}: from"):
            for port in flow["ports"] or [""]:
                add(flow["name"], flow["proto"], port, net)
    admin = [s for s in _as_list(list(always_ssh_from), "always_ssh_from") if s]
    ssh = parse_port(ssh_port, "ssh_port")
    for net in resolve_sources(admin, groups, hostvars, "always_ssh_from"):
        add("always-ssh", "tcp", ssh, net)
    ordered = sorted(rules, key=lambda k: (k[0], k[1], _port_key(k[2]), ipaddress.ip_network(k[3]).network_address,
                                           ipaddress.ip_network(k[3]).prefixlen))
    return [{"family": fam, "proto": proto, "port": port, "source": src, "flows": sorted(rules[(fam, proto, port, src)])}
            for fam, proto, port, src in ordered]


def _portless_accept(chain, rule, comment):
    """The iptables line accepting a rule of a protocol without ports (vrrp) from its source."""
    return f"-A {chain} -p {PORTLESS[rule['proto']]} -s {rule['source']} -m comment --comment \"{comment}\" -j ACCEPT"


def firewall_ufw_before_rules(rules, family=4):
    """The lines of ufw's before.rules (family 4) or before6.rules (6) for the rules of a
    protocol ufw's commands cannot open (vrrp): one ACCEPT per source in ufw's own input chain,
    commented with its flows. An empty list when there are none."""
    if family not in (4, 6):
        raise AnsibleFilterError(f"family must be 4 or 6, got {family!r}")
    chain = "ufw-before-input" if family == 4 else "ufw6-before-input"
    return [_portless_accept(chain, rule, ",".join(rule["flows"])[:200])
            for rule in rules if rule["family"] == family and rule["proto"] in PORTLESS]


def firewall_iptables(rules, family=4):
    """Render rules as an iptables-restore (family 4) or ip6tables-restore (6) file.

    Default deny inbound; loopback, established/related and the ICMP the protocol needs
    are allowed; then one ACCEPT per rule, commented with its flows.
    """
    if family not in (4, 6):
        raise AnsibleFilterError(f"family must be 4 or 6, got {family!r}")
    icmp = "icmp" if family == 4 else "ipv6-icmp"
    lines = [
        "# Managed by Ansible (role firewall): rendered from the traffic policy.",
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -m conntrack --ctstate INVALID -j DROP",
        f"-A INPUT -p {icmp} -j ACCEPT",
    ]
    for rule in rules:
        if rule["family"] != family:
            continue
        comment = ",".join(rule["flows"])[:250]
        if rule["proto"] in PORTLESS:
            lines.append(_portless_accept("INPUT", rule, comment))
            continue
        lines.append(f"-A INPUT -p {rule['proto']} -s {rule['source']} -m {rule['proto']} "
                     f"--dport {rule['port']} -m comment --comment \"{comment}\" -j ACCEPT")
    lines += ["COMMIT", ""]
    return "\n".join(lines)


class FilterModule:
    """Firewall policy filters (ufw's own state: firewall_ufw.py)."""

    def filters(self):
        """The policy compiler's filters, by name."""
        return {
            "firewall_check_flows": firewall_check_flows,
            "firewall_host_rules": firewall_host_rules,
            "firewall_iptables": firewall_iptables,
            "firewall_ufw_before_rules": firewall_ufw_before_rules,
        }
