"""Check a role's variables against its argument spec: types, choices and constraints.

Every option of a role's ``meta/argument_specs.yml`` ends its ``description`` with one
constraint clause (ansible-lint's schema refuses extra keys in an option, so the constraint
lives in the description, where ``ansible-doc`` and the role's README show it too)::

    nginx_worker_connections: {type: int, description: "Connections per worker. [check: int 512..1048576]"}
    certbot_domains: {type: list, elements: str, description: "Names. [check: nonempty; domain]"}
    haproxy_check_fall: {type: int, description: "Failed checks before down. [check: int 1..]"}
    common_ssh_x11_forwarding: {type: bool, description: "X11Forwarding. [check: type]"}

The clause is ``[check: C1; C2; ...]``; each constraint is a kind and its space-separated
arguments. For a list, the value kinds apply to each element and the container kinds
(``nonempty``, ``keys``, ``required_keys``, ``values``, ``keymatch``, ``unique``) to the list
(``keys`` and ``required_keys`` to each dict of a list of dicts). Kinds (see ``KINDS``):

    type                        the declared type (and choices) says everything (bools, choices)
    validated_by WHAT           a structure that WHAT checks further, naming the field (flows)
    allow VALUE                 VALUE ('' for the empty string) is accepted as it is
    int [MIN]..[MAX]            a whole number in the range     port: 1..65535
    nonempty                    not empty ('', [], {})          minlen N: a string of N+ characters
    haproxy_time [MIN]..[MAX]   5s, 500ms, 2m ...               nginx_time: 10m, 1d, 1h30m
    duration                    a Prometheus/Go duration: 5s, 15d, 1h30m
    size                        a size: 256M, 1G, 1048576
    ip [routable]               an IP address (routable: not a wildcard nor loopback)
    cidr                        an IP address or a CIDR network (no host bits)
    host                        an IP address or a DNS host name
    hostport [loopback|private] HOST:PORT ([v6]:PORT), the host loopback or internal if asked
    domain                      a lower-case DNS name with a dot (certificates)
    email, sshkey, hhmm, package, abspath, mode, regex
    url SCHEME...               a URL with one of these schemes
    match REGEX                 the whole value matches REGEX     notin V...: none of these values
    group                       an inventory group; group_with_hosts: with hosts; group_or_host
    keys K...                   dict keys among K               required_keys K...: all present
    values V...                 dict values (or their list elements) among V
    keymatch REGEX              every dict key matches REGEX

Each check is a pure function returning ``None`` when the value is good, or the text of what
is expected. The action plugin templates every option, checks them all and fails with every
violation, one per line: ``NAME: got VALUE, expected WHAT`` (``no_log`` values are not shown).

    - name: Check the role's variables against meta/argument_specs.yml
      infra_check_vars:            # role: the role being run; entry_point: validate
      delegate_to: localhost

Once every option passes, the rules between variables, in ``rules`` (one task for the whole
role: each assert task of its own was a task per host, a tenth of a second each), in order::

    rules:
      - name: Check the renewal against the lifetime
        that: pki_cert_renew_days | int < pki_cert_valid_days | int     # a condition or a list
        msg: "pki_cert_renew_days ({{ pki_cert_renew_days }}) must be ..."
        when: pki_enabled                   # optional: a condition
        loop: "{{ pki_certs }}"             # optional: the rule holds for each element;
        loop_var: pki_cert                  #   its name (default item), index_var: its index
        vars: {pki_days: "{{ ... }}"}       # optional: variables of this rule alone
        first: true                         # optional: checked before the options (below)

A rule marked ``first`` is checked before the options, and alone: it explains a value that the
options' checks would only refuse (a default derived from other hosts). Every rule that fails
is named, with its message; a rule that cannot be evaluated after one has
failed is left out (it usually depends on the value refused), and one that cannot be evaluated
on its own is named with the error (a filter that checks a structure raises one naming the
field). ``packages`` is an expression, evaluated once every check
has passed: the role's Debian packages, returned as ``packages`` (site.yml's preflight gathers
them for the common role's one apt transaction). ``rules`` and ``packages`` reach the plugin
untemplated (``finalize_task_arg``): they are templated here, after the checks, with each
rule's own variables, so a bad value is refused by name, never by a templating error first.

``named_in`` (``{file: firewall_flows.yml, roles_dir: DIR}``) checks, in the same call, the
options of every role under ``DIR`` that has that file, those its text names (the firewall's
flows are rendered from other roles' variables: a bad port is refused under its own name, with
the role whose file names it), once the role's own options pass (``DIR`` is usually one of
them). The files found are returned, sorted, as ``named_in_files``; with ``render: true`` in
``named_in``, also each file rendered with the task's variables (as the template module renders:
blocks trimmed) and read as YAML, in the same order, as ``named_in_rendered`` (the template
lookup would deep-copy every variable once per file); the rules checked after the options see
that list as the variable ``named_in_rendered`` (the firewall compiles its policy from it).

``roles`` (a list of role names, under ``roles_dir``, by default the playbook's ``roles``)
checks several roles in one call, one task per host where an ``include_role`` of each role's
``tasks/validate.yml`` was several (site.yml's preflight)::

    - name: Check the variables of the roles this host runs
      infra_check_vars:
        roles: "{{ infra_roles_this_run }}"
        rules: [...]                # optional: the caller's own, checked with the task's variables
      delegate_to: localhost

Each role's check is the ``infra_check_vars`` task of its ``tasks/validate.yml`` (exactly one;
the file's other tasks are not run, nor that task's ``when``), run with the role's variables
layered as Ansible layers them for the role's own tasks: its defaults under everything; its
``vars`` and the task's own ``vars`` above the inventory, the play and the facts; extra
variables above all; ``role_name`` and ``role_path`` set. Every role's refusals are named
together. The result has ``roles`` (each role's result, as its own task would register it, with
``register``: that task's name for it) and ``packages`` (all of them, sorted, once).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re

from collections import ChainMap

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible.utils.vars import load_extra_vars

CHECK = re.compile(r"\[check:\s*(?P<spec>.*)\]\s*$")
HAPROXY_TIME = re.compile(r"^([0-9]+)(us|ms|s|m|h|d)?$")
HAPROXY_MS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
NGINX_TIME = re.compile(r"^([0-9]+(ms|s|m|h|d|w|M|y)?)+$")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
SIZE = re.compile(r"^[0-9]+[KMGTkmgt]?$")
LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN = re.compile(rf"^({LABEL}\.)+[a-z]{{2,63}}$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SSHKEY = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
                    r" [A-Za-z0-9+/]+={0,3}( .*)?$")
HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
MODE = re.compile(r"^0?[0-7]{3,4}$")
URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[^/\s?#]+)(?P<rest>[/?#]\S*)?$")
CONTAINER_KINDS = {"nonempty", "keys", "required_keys", "values", "keymatch", "unique"}


def _range(spec):
    """``'1..65535'`` -> ``('1', '65535')``; an empty side is ``None``."""
    low, _, high = spec.partition("..")
    return (low or None), (high or None)


def haproxy_time_ms(value):
    """An HAProxy time (``5s``, ``500ms``, ``1500``) in milliseconds, or ``None`` if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    match = HAPROXY_TIME.match(str(value))
    return int(int(match.group(1)) * HAPROXY_MS[match.group(2)]) if match else None


def check_int(value, bounds="..", _ctx=None):
    """A whole number (an int, or a string of digits) within ``MIN..MAX`` (either side optional)."""
    low, high = _range(bounds)
    what = "an integer" + (f" from {low} to {high}" if low and high else f", {low} or more" if low
                           else f", {high} or less" if high else "")
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value))):
        return what
    number = int(value)
    if (low is not None and number < int(low)) or (high is not None and number > int(high)):
        return what
    return None


def check_port(value, _ctx=None):
    """A TCP/UDP port, 1 to 65535."""
    return "a port from 1 to 65535" if check_int(value, "1..65535") else None


def check_nonempty(value, _ctx=None):
    """Not empty: a string with characters, a list or a mapping with entries."""
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        return "a value that is not empty"
    return None


def check_minlen(value, length, _ctx=None):
    """A string of at least ``length`` characters."""
    return f"a string of at least {length} characters" if not isinstance(value, str) or len(value) < int(length) else None


def check_haproxy_time(value, bounds="..", _ctx=None):
    """An HAProxy time (a number and a unit: us, ms, s, m, h, d; none: ms) within HAProxy-time bounds."""
    low, high = _range(bounds)
    what = "an HAProxy time such as 5s or 500ms" + (f", from {low or 0} to {high}" if high else f", {low} or more" if low else "")
    ms = haproxy_time_ms(value)
    if ms is None or (low and ms < haproxy_time_ms(low)) or (high and ms > haproxy_time_ms(high)):
        return what
    return None


def check_nginx_time(value, _ctx=None):
    """An nginx time: numbers with units ms, s, m, h, d, w, M, y (``10m``, ``1h30m``, ``60``)."""
    return None if isinstance(value, (str, int)) and not isinstance(value, bool) and NGINX_TIME.match(str(value)) \
        else "an nginx time such as 10m, 1d or 1h30m"


def check_duration(value, _ctx=None):
    """A Prometheus/Go duration: numbers with units ms, s, m, h, d, w, y (``5s``, ``15d``)."""
    return None if isinstance(value, str) and DURATION.match(value) else "a duration such as 5s, 1m or 15d"


def check_size(value, _ctx=None):
    """A size in bytes, optionally with a unit K, M, G or T (``256M``)."""
    ok = isinstance(value, (str, int)) and not isinstance(value, bool) and SIZE.match(str(value)) and int(re.sub(r"\D", "", str(value))) > 0
    return None if ok else "a size such as 256M, 1G or 1048576"


def _ip(value):
    try:
        return ipaddress.ip_address(str(value).strip("[]")) if isinstance(value, str) else None
    except ValueError:
        return None


def check_ip(value, *flags, _ctx=None):
    """An IP address; with ``routable``, neither a wildcard (0.0.0.0, ::) nor loopback."""
    address = _ip(value)
    if address is None:
        return "an IP address" + (" of this host (not a wildcard nor loopback)" if "routable" in flags else "")
    if "routable" in flags and (address.is_unspecified or address.is_loopback):
        return "an IP address of this host, not a wildcard nor loopback"
    return None


def check_cidr(value, _ctx=None):
    """An IP address or a CIDR network without host bits (``10.0.0.0/8``)."""
    try:
        ipaddress.ip_network(str(value), strict=True)
        return None if isinstance(value, str) else "an IP address or CIDR network"
    except ValueError:
        return "an IP address or CIDR network such as 10.0.0.0/8"


def check_host(value, _ctx=None):
    """An IP address or a DNS host name."""
    return None if isinstance(value, str) and (_ip(value) or HOSTNAME.match(value)) else "an IP address or host name"


def check_hostport(value, *flags, _ctx=None):
    """``HOST:PORT`` (``[v6]:PORT``); ``loopback``: a loopback host; ``private``: loopback or private."""
    scope = " with a loopback address" if "loopback" in flags else " with an internal address" if "private" in flags else ""
    what = f"ADDRESS:PORT{scope}"
    if not isinstance(value, str):
        return what
    host, sep, port = value.rpartition(":")
    if not sep or check_port(port) or not host:
        return what
    address = _ip(host) if (host.startswith("[") and host.endswith("]")) or ":" not in host else None
    if address is None and not (HOSTNAME.match(host) and not host.startswith("[")):
        return what
    if "loopback" in flags and not (host == "localhost" or (address and address.is_loopback)):
        return what
    if "private" in flags and not (host == "localhost" or (address and not address.is_unspecified
                                                           and (address.is_loopback or address.is_private))):
        return what
    return None


def check_domain(value, _ctx=None):
    """A lower-case DNS name with at least one dot (``www.example.com``)."""
    return None if isinstance(value, str) and len(value) <= 253 and DOMAIN.match(value) else "a lower-case DNS name such as www.example.com"


def check_email(value, _ctx=None):
    """An e-mail address."""
    return None if isinstance(value, str) and EMAIL.match(value) else "an e-mail address"


def check_sshkey(value, _ctx=None):
    """An SSH public key line: ``TYPE BASE64 [COMMENT]``."""
    return None if isinstance(value, str) and SSHKEY.match(value) else "an SSH public key ('TYPE BASE64 [COMMENT]')"


def check_hhmm(value, _ctx=None):
    """A time of day, ``HH:MM``."""
    return None if isinstance(value, str) and HHMM.match(value) else "a time of day HH:MM"


def check_package(value, _ctx=None):
    """A Debian package name."""
    return None if isinstance(value, str) and PACKAGE.match(value) else "a Debian package name"


def check_abspath(value, _ctx=None):
    """An absolute path."""
    return None if isinstance(value, str) and value.startswith("/") and "\n" not in value else "an absolute path"


def check_mode(value, _ctx=None):
    """A file mode as an octal string (``'0640'``)."""
    return None if isinstance(value, str) and MODE.match(value) else "a file mode as a quoted octal string such as '0640'"


def check_regex(value, _ctx=None):
    """A regular expression Python (and so Ansible's match) can compile."""
    try:
        re.compile(value)
        return None if isinstance(value, str) else "a regular expression"
    except (re.error, TypeError):
        return "a valid regular expression"


def check_url(value, *schemes, _ctx=None):
    """A URL with one of ``schemes`` and a host."""
    what = f"a URL starting with {' or '.join(s + '://' for s in schemes)}"
    match = URL.match(value) if isinstance(value, str) else None
    return None if match and match.group("scheme") in schemes else what


def check_match(value, pattern, _ctx=None):
    """The whole value (a string or number) matches ``pattern``."""
    ok = isinstance(value, (str, int)) and not isinstance(value, bool) and re.fullmatch(pattern, str(value))
    return None if ok else f"a value matching {pattern}"


def check_notin(value, *forbidden, _ctx=None):
    """None of the ``forbidden`` values."""
    return f"none of {', '.join(forbidden)}" if str(value) in forbidden else None


def check_group(value, _ctx=None):
    """The name of an inventory group."""
    return None if isinstance(value, str) and value in (_ctx or {}).get("groups", {}) else "an inventory group"


def check_group_with_hosts(value, _ctx=None):
    """The name of an inventory group that holds hosts."""
    return None if isinstance(value, str) and (_ctx or {}).get("groups", {}).get(value) else "an inventory group with hosts"


def check_group_or_host(value, _ctx=None):
    """An inventory group, an inventory host, or an address/CIDR."""
    ctx = _ctx or {}
    ok = isinstance(value, str) and (value in ctx.get("groups", {}) or value in ctx.get("hosts", ()) or not check_cidr(value))
    return None if ok else "an inventory group, host or CIDR network"


def check_keys(value, *allowed, _ctx=None):
    """A mapping whose keys are among ``allowed``."""
    return None if isinstance(value, dict) and set(map(str, value)) <= set(allowed) else f"a mapping with keys among {', '.join(allowed)}"


def check_required_keys(value, *required, _ctx=None):
    """A mapping holding every key of ``required``."""
    return None if isinstance(value, dict) and set(required) <= set(map(str, value)) else f"a mapping with the keys {', '.join(required)}"


def check_values(value, *allowed, _ctx=None):
    """A mapping whose values (or the elements of its list values) are among ``allowed``."""
    if not isinstance(value, dict):
        return "a mapping"
    items = [e for v in value.values() for e in (v if isinstance(v, list) else [v])]
    return None if all(str(e) in allowed for e in items) else f"a mapping with values among {', '.join(allowed)}"


def check_keymatch(value, pattern, _ctx=None):
    """A mapping whose every key matches ``pattern``."""
    ok = isinstance(value, dict) and all(re.fullmatch(pattern, str(k)) for k in value)
    return None if ok else f"a mapping with keys matching {pattern}"


def check_unique(value, _ctx=None):
    """A list without duplicates."""
    return None if isinstance(value, list) and len(set(map(str, value))) == len(value) else "a list without duplicates"


def check_type(_value, _ctx=None):
    """Nothing beyond the declared type and choices."""
    return None


def check_validated_by(_value, *_what, _ctx=None):
    """The structure is checked by the named task or filter, which names the field."""
    return None


KINDS = {name[len("check_"):]: func for name, func in globals().items() if name.startswith("check_")}


def parse_constraints(description):
    """The constraints of an option's description: ``[(kind, [args...]), ...]``; ``None`` if it has none.

    Raises ValueError for an unknown kind (a typo in a spec must not silently check nothing).
    """
    text = " ".join(description) if isinstance(description, list) else str(description or "")
    found = CHECK.search(text)
    if not found:
        return None
    constraints = []
    for part in filter(None, (p.strip() for p in found.group("spec").split(";"))):
        kind, _, rest = part.partition(" ")
        if kind not in KINDS and kind != "allow":
            raise ValueError(f"unknown check kind '{kind}'")
        # A regular expression is one argument, spaces included.
        args = [rest.strip()] if kind in ("match", "keymatch") else rest.split()
        constraints.append((kind, ["" if a in ("''", '""') else a for a in args]))
    return constraints


def strip_constraints(description):
    """The description without its constraint clause."""
    text = " ".join(description) if isinstance(description, list) else str(description or "")
    return CHECK.sub("", text).strip()


# Strings that mean false but read as true wherever a role tests the value as it is (``when: x and
# y``, ``{% if x %}``): what ``-e name=false`` hands over (key=value extra vars are strings).
FALSE_STRINGS = {"false", "no", "off", "0"}
BOOLEANS = {"true", "yes", "on", "1"} | FALSE_STRINGS


def check_declared_type(value, spec):
    """The declared ``type`` (and ``elements``, ``choices``): ``None`` or what is expected."""
    kind = spec.get("type", "str")
    if kind == "raw":
        return None
    if kind == "int":
        return check_int(value) and "an integer"
    if kind == "float":
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if kind == "bool":
        return None if isinstance(value, bool) or str(value).lower() in BOOLEANS and not isinstance(value, (list, dict)) else "true or false"
    if kind in ("str", "path"):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return "a string"
    elif kind == "list":
        if not isinstance(value, list):
            return f"a list (of {spec.get('elements', 'values')})"
        for element in value:
            if spec.get("elements") and check_declared_type(element, {"type": spec["elements"]}):
                return f"a list of {spec['elements']}"
    elif kind == "dict" and not isinstance(value, dict):
        return "a mapping"
    choices = spec.get("choices")
    if choices:
        items = value if isinstance(value, list) else [value]
        if any(str(i) not in [str(c) for c in choices] for i in items):
            return ("a list of " if isinstance(value, list) else "one of ") + ", ".join(map(str, choices))
    return None


def show(value, secret=False):
    """A value as the operator would recognise it in a message."""
    if secret:
        return "(hidden)" if value not in ("", None) else "''"
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def check_option(name, value, spec, ctx=None):
    """Every violation of one option (its type, then its constraints), as messages naming it."""
    secret = bool(spec.get("no_log"))
    constraints = parse_constraints(spec.get("description")) or []
    for kind, args in constraints:
        if kind == "allow" and str(value) == (args[0] if args else ""):
            return []
    if spec.get("type") == "bool" and isinstance(value, str) and value.strip().lower() in FALSE_STRINGS:
        return [f"{name}: got the string {value!r}, which a condition reads as true; expected the boolean false "
                f"(on the command line, JSON: -e '{{\"{name}\": false}}')"]
    expected = check_declared_type(value, spec)
    if expected:
        return [f"{name}: got {show(value, secret)}, expected {expected}"]
    problems = []
    for kind, args in constraints:
        if kind == "allow":
            continue
        func = KINDS[kind]
        if isinstance(value, list) and kind not in CONTAINER_KINDS:
            for index, element in enumerate(value):
                expected = func(element, *args, _ctx=ctx)
                if expected:
                    problems.append(f"{name}[{index}]: got {show(element, secret)}, expected {expected}")
        elif isinstance(value, list) and kind in ("keys", "required_keys"):
            for index, element in enumerate(value):
                expected = func(element, *args, _ctx=ctx)
                if expected:
                    problems.append(f"{name}[{index}]: got {show(element, secret)}, expected {expected}")
        else:
            expected = func(value, *args, _ctx=ctx)
            if expected:
                problems.append(f"{name}: got {show(value, secret)}, expected {expected}")
    return problems


ALIAS = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\|\s*default\([^()]*\)\s*)?\}\}$")


def alias_of(raw):
    """The variable a value only passes on (``{{ infra_admin_networks | default([]) }}``), or ``None``."""
    found = ALIAS.match(raw.strip()) if isinstance(raw, str) else None
    return found.group(1) if found else None


RULE_KEYS = frozenset(("name", "that", "msg", "when", "loop", "loop_var", "index_var", "vars", "first"))


def refused(result, role, problems):
    """The task's result when values are refused: failed, every problem named."""
    result.update(failed=True, msg=f"Role {role}: {len(problems)} variable value(s) refused: " + "; ".join(problems),
                  violations=problems)
    return result


def files_named_in(named_in):
    """The paths of ``roles_dir/<role>/<file>`` that exist, sorted (``named_in``: file, roles_dir)."""
    name, roles_dir = named_in["file"], named_in["roles_dir"]
    if not name or os.sep in name:
        raise KeyError(f"file must be a file name, got {name!r}")
    return sorted(path for path in (os.path.join(roles_dir, role, name) for role in os.listdir(roles_dir))
                  if os.path.isfile(path))


def load_options(role_dir, entry_point="validate"):
    """The options of one entry point of a role's meta/argument_specs.yml (anchors resolved)."""
    with open(os.path.join(role_dir, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        specs = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["argument_specs"]
    return specs[entry_point].get("options") or {}


def role_var_files(role_dir, kind):
    """A role's ``defaults`` or ``vars`` files, in the order Ansible reads them: ``main.yml``
    (``.yaml``, ``.json``, no extension), or each file of a ``main/`` directory, sorted."""
    base = os.path.join(role_dir, kind, "main")
    if os.path.isdir(base):
        return [os.path.join(base, name) for name in sorted(os.listdir(base))
                if name.endswith((".yml", ".yaml", ".json")) and os.path.isfile(os.path.join(base, name))]
    return [path for path in (base + ext for ext in (".yml", ".yaml", ".json", "")) if os.path.isfile(path)][:1]


def check_task_of(tasks, path):
    """The one ``infra_check_vars`` task of a role's tasks/validate.yml: its arguments, its ``register``
    and its own ``vars``."""
    found = [task for task in tasks or [] if isinstance(task, dict) and isinstance(task.get("infra_check_vars"), dict)]
    if len(found) != 1:
        raise KeyError(f"{path} must hold one infra_check_vars task with its arguments, found {len(found)}")
    return found[0]["infra_check_vars"], found[0].get("register"), found[0].get("vars") or {}


class ActionModule(ActionBase):
    """Check the variables of a role (or those of its options named in ``only_in``) on the controller;
    with ``roles``, those of several roles in one call (site.yml's preflight)."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("role", "entry_point", "roles_dir", "only_in", "rules", "packages", "named_in", "roles"))
    # Templated by run(), after the options' checks, and each rule with its own variables.
    _LATE_ARGS = frozenset(("rules", "packages"))

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        """Leave ``rules`` and ``packages`` untemplated: run() templates them once the checks pass."""
        if name in cls._LATE_ARGS:
            return value
        return super().finalize_task_arg(name, value, templar, context)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        if "roles" in self._task.args:
            return self._run_roles(result, task_vars)
        role_path = task_vars.get("role_path", "")
        role = self._task.args.get("role") or os.path.basename(role_path)
        roles_dir = self._task.args.get("roles_dir") or os.path.dirname(role_path)
        result.update(self._check_role(role, roles_dir, self._task.args, task_vars))
        return result

    def _run_roles(self, result, task_vars):
        """``roles``: each role's check, as its tasks/validate.yml declares it (its ``infra_check_vars``
        task), with the role's defaults and vars layered as Ansible layers them for the role's tasks;
        ``rules`` here are the caller's own, checked first with the task's variables. One task per
        host where an ``include_role`` of each role's validate.yml was several."""
        roles = self._task.args.get("roles") or []
        roles_dir = self._task.args.get("roles_dir") or os.path.join(task_vars.get("playbook_dir", "."), "roles")
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            result.update(failed=True, msg=f"infra_check_vars: roles must be a list of role names, got {roles!r}")
            return result
        messages, violations, checks = [], [], {}
        site_rules = self._task.args.get("rules") or []
        if site_rules:
            problems = self._check_rules(site_rules, task_vars)
            if problems:
                messages.append(f"{len(problems)} rule(s) broken: " + "; ".join(problems))
                violations.extend(problems)
        base = self._templar
        extra = load_extra_vars(self._loader)
        try:
            for role in roles:
                role_dir = os.path.join(roles_dir, role)
                try:
                    path = os.path.join(role_dir, "tasks", "validate.yml")
                    args, register, own = check_task_of(self._loader.load_from_file(path, trusted_as_template=True), path)
                    role_vars, defaults = ({k: v for f in role_var_files(role_dir, kind)
                                            for k, v in (self._loader.load_from_file(f, trusted_as_template=True) or {}).items()}
                                           for kind in ("vars", "defaults"))
                except (AnsibleError, OSError, KeyError, AttributeError) as exc:
                    result.update(failed=True, msg=f"infra_check_vars: role '{role}' ({role_dir}): {str(exc).splitlines()[0]}")
                    return result
                # Ansible's order for a role's tasks: its defaults under everything; its vars, then the
                # task's own, above the inventory, the play and the facts; extra variables above all.
                variables = ChainMap({"role_name": role, "role_path": role_dir}, extra, own, role_vars, task_vars, defaults)
                self._templar = base.copy_with_new_env(available_variables=variables)
                checked = self._check_role(role, roles_dir, args, variables)
                if checked.get("failed"):
                    messages.append(checked["msg"])
                    violations.extend(checked.get("violations", []))
                    continue
                checks[role] = dict(checked, register=register)
        finally:
            self._templar = base
        if messages:
            result.update(failed=True, msg=" | ".join(messages), violations=violations)
            return result
        result.update(changed=False, msg=f"Roles checked: {', '.join(roles) or 'none'}", roles=checks,
                      packages=sorted({name for check in checks.values() for name in check.get("packages", [])}))
        return result

    def _check_role(self, role, roles_dir, args, task_vars):
        """One role's check (``args``: its infra_check_vars arguments) with ``task_vars`` and
        ``self._templar`` holding its variables: the result's fields, ``failed`` and ``msg`` when refused."""
        result = {}
        entry_point = args.get("entry_point", "validate")
        only_in = args.get("only_in")
        try:
            options = load_options(os.path.join(roles_dir, role), entry_point)
        except (OSError, KeyError, yaml.YAMLError) as exc:
            result.update(failed=True, msg=f"infra_check_vars: cannot read the argument spec of role '{role}': {exc}")
            return result
        ctx = {"groups": task_vars.get("groups", {}), "hosts": list(task_vars.get("hostvars", {}).keys())}
        rules = args.get("rules") or []
        # A rule marked first explains a value the options' checks would only refuse.
        problems = self._check_rules([r for r in rules if isinstance(r, dict) and r.get("first")], task_vars)
        if problems:
            return refused(result, role, problems)
        problems.extend(self._check_options(options, only_in, role, task_vars, ctx))
        named_in = args.get("named_in")
        if named_in is not None and not problems:
            try:
                # In a role's run the task templated it; read from validate.yml (roles), it is templated here.
                named_in = self._templar.template(named_in)
            except AnsibleError as exc:
                problems.append(f"named_in: {str(exc).splitlines()[0]}")
        rendered = None
        # Only once the role's own options pass: named_in is made of them (firewall_roles_dir).
        if named_in is not None and not problems:
            try:
                named_files = files_named_in(named_in)
                # Each file's role, its text and its options, read before any is checked.
                named = []
                for path in named_files:
                    with open(path, encoding="utf-8") as handle:
                        named.append((os.path.basename(os.path.dirname(path)), os.path.basename(path), handle.read(),
                                      load_options(os.path.dirname(path), entry_point)))
            except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
                result.update(failed=True, msg=f"infra_check_vars: named_in {named_in!r}: {exc}")
                return result
            for other, name, text, other_options in named:
                where = f" (role {other}, named in its {name})"
                problems.extend(m + where for m in self._check_options(other_options, text, other, task_vars, ctx))
            result["named_in_files"] = named_files
            if named_in.get("render") and not problems:
                rendered = []
                for (other, name, text, _), path in zip(named, named_files):
                    try:
                        out = self._templar.template(trust_as_template(text), escape_backslashes=False,
                                                     overrides={"trim_blocks": True})
                        rendered.append(yaml.load(out or "", Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
                    except (AnsibleError, yaml.YAMLError) as exc:
                        result.update(failed=True, msg=f"infra_check_vars: named_in: role {other}'s {name} ({path}) "
                                                       f"could not be rendered: {str(exc).splitlines()[0]}")
                        return result
                result["named_in_rendered"] = rendered
        if not problems:
            # The rules after the options see the rendered files, as named_in_rendered.
            later = ChainMap({"named_in_rendered": rendered}, task_vars) if rendered is not None else task_vars
            problems = self._check_rules([r for r in rules if not (isinstance(r, dict) and r.get("first"))], later)
        if problems:
            return refused(result, role, problems)
        result.update(changed=False, msg=f"Role {role}: variables checked")
        if "packages" in args:
            try:
                packages = self._templar.template(args["packages"])
            except AnsibleError as exc:
                result.update(failed=True, msg=f"Role {role}: its packages could not be computed ({str(exc).splitlines()[0]})")
                return result
            if not isinstance(packages, list) or not all(isinstance(name, str) for name in packages):
                result.update(failed=True, msg=f"Role {role}: packages must be a list of package names, got {packages!r}")
                return result
            result["packages"] = sorted(set(packages))
        return result

    def _check_options(self, options, only_in, role, task_vars, ctx):
        """The problems of a role's options (those ``only_in`` names, when given), in order."""
        problems, uncomputed = [], []
        for name, spec in options.items():
            if only_in is not None and not re.search(rf"\b{re.escape(name)}\b", str(only_in)):
                continue
            if parse_constraints(spec.get("description")) is None:
                problems.append(f"{name}: its argument spec has no [check: ...] constraint (role {role})")
                continue
            if name not in task_vars:
                if spec.get("required"):
                    problems.append(f"{name}: not set, expected a value")
                continue
            try:
                value = self._templar.template(task_vars[name])
            except AnsibleError as exc:
                uncomputed.append((name, str(exc).splitlines()[0]))
                continue
            source = alias_of(task_vars[name])
            found = check_option(name, value, spec, ctx)
            if source and source != name and source in task_vars:
                # The operator set the other variable: name it too.
                found = [re.sub(rf"^({re.escape(name)}(\[[0-9]+\])?)", rf"\1 (from {source})", m) for m in found]
            problems.extend(found)
        for name, error in uncomputed:
            # A value derived from another, wrong one: that one is named above.
            problems.append(f"{name}: could not be computed" + (" from the values above" if problems else f" ({error})"))
        return problems

    def _check_rules(self, rules, task_vars):
        """The messages of the rules that fail (see the module's docstring), in order."""
        if not isinstance(rules, list):
            return [f"infra_check_vars: rules must be a list, got {type(rules).__name__}"]
        failed = []
        for number, rule in enumerate(rules):
            label = rule.get("name", f"rule {number}") if isinstance(rule, dict) else f"rule {number}"
            unknown = set(rule) - RULE_KEYS if isinstance(rule, dict) else None
            if unknown is None or unknown or "that" not in rule or "msg" not in rule:
                failed.append(f"infra_check_vars: {label} must be a dict with that and msg, and only "
                              f"{', '.join(sorted(RULE_KEYS))}; got {rule!r}")
                continue
            try:
                failed.extend(self._check_rule(rule, task_vars))
            except AnsibleError as exc:
                if not failed:
                    failed.append(f"{label}: {str(exc).splitlines()[0]}")
        return failed

    def _check_rule(self, rule, task_vars):
        """The messages of one rule: one per element of its loop that breaks it (or one)."""
        own = dict(rule.get("vars") or {})
        templar = self._templar.copy_with_new_env(available_variables=ChainMap(own, task_vars))
        if "when" in rule and not templar.evaluate_conditional(rule["when"]):
            return []
        conditions = rule["that"] if isinstance(rule["that"], list) else [rule["that"]]
        items = [None]
        if "loop" in rule:
            items = templar.template(rule["loop"])
            if not isinstance(items, list):
                raise AnsibleError(f"its loop must give a list, got {type(items).__name__}")
        messages = []
        for index, element in enumerate(items):
            scope = dict(own)
            if "loop" in rule:
                scope[rule.get("loop_var", "item")] = element
                if "index_var" in rule:
                    scope[rule["index_var"]] = index
            templar.available_variables = ChainMap(scope, task_vars)
            if not all(templar.evaluate_conditional(condition) for condition in conditions):
                messages.append(" ".join(str(templar.template(rule["msg"])).split()))
        return messages
