"""Filters for the haproxy role's limits: HAProxy time values (the address lists are checked by
action_plugins/infra_check_vars.py, kind `cidr`).

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# HAProxy's time format: a number, then an optional unit; no unit means milliseconds.
TIME = re.compile(r"^([0-9]+)(us|ms|s|m|h|d)?$")
UNIT_MS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def haproxy_time_ms(value):
    """An HAProxy time (``5s``, ``500ms``, ``2m``, ``1500``) in milliseconds, as an integer.

    Raises AnsibleFilterError for anything HAProxy would not read as a time.
    """
    match = TIME.match(str(value).strip()) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not match:
        raise AnsibleFilterError(f"'{value}' is not an HAProxy time (a number and a unit: us, ms, s, m, h, d)")
    return int(int(match.group(1)) * UNIT_MS[match.group(2)])


class FilterModule:  # pylint: disable=too-few-public-methods
    """Ansible entry point."""

    def filters(self):
        """The haproxy filters, by name."""
        return {"haproxy_time_ms": haproxy_time_ms}
