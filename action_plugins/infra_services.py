"""Make sure of several systemd units' boot and running states with one read of the host.

A ``systemd_service`` task costs a module call per unit even when nothing changes (Python
started on the host, several ``systemctl`` commands run). This action asks systemd once for
every listed unit (``systemctl show``: whether it is loaded, its unit file state and whether it
is active), compares on the controller with what is wanted, and hands only the units that
differ to the ``systemd_service`` module, which enables, starts or stops them, honours check
mode and fails with its own message on a missing unit, as it always does. A unit stopped or
disabled by hand still differs and is mended.

Task arguments::

    infra_services:
      daemon_reload: "{{ dropin is changed }}"   # optional: systemd re-reads its units first
      units:
        - name: chrony                    # the unit (``.service`` may be left out)
          enabled: true                   # optional: enabled at boot (true) or not (false)
          state: started                  # optional: started or stopped
        - name: apt-daily.timer
          enabled: false
          state: stopped

Each unit needs ``enabled``, ``state`` or both. Only plain answers count as already right:
``enabled`` for true, ``disabled`` for false, ``active`` for started, ``inactive`` or
``failed`` for stopped, on a loaded unit. Anything else (static, indirect, generated, a unit
still activating, one not found) goes to the module, which decides as it always has. The
result is ``changed`` when any unit changed, with ``changed_units`` (their names, for the
caller's conditions) and ``differences`` (unit -> the fields that differed).
"""

import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

STATES = ("started", "stopped")
KEYS = {"name", "enabled", "state"}
PROPERTIES = ("Id", "LoadState", "UnitFileState", "ActiveState")
# What systemd says when the unit is as wanted; anything else is the module's to decide.
ENABLED = {True: ("enabled",), False: ("disabled",)}
ACTIVE = {"started": ("active",), "stopped": ("inactive", "failed")}


def check_units(units):
    """The ``units`` argument, checked: a non-empty list of units, each with what it needs.

    Returns the units as mappings. Raises AnsibleActionFail naming the unit and the field.
    """
    if not isinstance(units, list) or not units:
        raise AnsibleActionFail("infra_services: units must be a non-empty list of units")
    checked, seen = [], set()
    for index, unit in enumerate(units):
        where = f"infra_services: units[{index}]"
        if not isinstance(unit, dict):
            raise AnsibleActionFail(f"{where} must be a mapping, got {type(unit).__name__}")
        extra = sorted(set(unit) - KEYS)
        if extra:
            raise AnsibleActionFail(f"{where}: unknown field(s) {', '.join(extra)} (known: {', '.join(sorted(KEYS))})")
        name = unit.get("name")
        if not isinstance(name, str) or not name or name.startswith("-") or any(c.isspace() for c in name):
            raise AnsibleActionFail(f"{where}.name: expected a unit name, got {name!r}")
        where = f"infra_services: units[{index}] ({name})"
        if name in seen:
            raise AnsibleActionFail(f"{where}.name: listed twice")
        seen.add(name)
        if "enabled" not in unit and "state" not in unit:
            raise AnsibleActionFail(f"{where}: needs enabled, state or both")
        if "enabled" in unit and not isinstance(unit["enabled"], bool):
            raise AnsibleActionFail(f"{where}.enabled: expected true or false, got {unit['enabled']!r}")
        if "state" in unit and unit["state"] not in STATES:
            raise AnsibleActionFail(f"{where}.state: expected one of {', '.join(STATES)}, got {unit['state']!r}")
        checked.append(dict(unit))
    return checked


def parse_show(out, count):
    """``systemctl show``'s answer for ``count`` units: a list of mappings, one per unit, in order.

    systemd prints one block of ``Key=value`` lines per unit, the blocks separated by an empty
    line. Raises AnsibleActionFail when the number of blocks is not ``count``.
    """
    blocks, block = [], {}
    for line in out.splitlines():
        if not line.strip():
            if block:
                blocks.append(block)
                block = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            block[key] = value
    if block:
        blocks.append(block)
    if len(blocks) != count:
        raise AnsibleActionFail(f"infra_services: systemd answered for {len(blocks)} units, {count} were asked: {out[-300:]!r}")
    return blocks


def differences(want, have):
    """What differs between a unit wanted (from check_units) and what systemd says of it.

    Returns the fields that are not plainly as wanted (``enabled``, ``state``, or ``loaded``
    for a unit systemd has not loaded); empty when the unit is as wanted.
    """
    if have.get("LoadState") != "loaded":
        return ["loaded"]
    found = []
    if "enabled" in want and have.get("UnitFileState") not in ENABLED[want["enabled"]]:
        found.append("enabled")
    if "state" in want and have.get("ActiveState") not in ACTIVE[want["state"]]:
        found.append("state")
    return found


class ActionModule(ActionBase):
    """infra_services: several units' boot and running states for one read of the host."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("units", "daemon_reload"))

    def _systemctl(self, args, what):
        res = self._low_level_execute_command(
            "SYSTEMD_PAGER= LC_ALL=C systemctl --no-pager " + " ".join(shlex.quote(a) for a in args), sudoable=True)
        if res.get("rc") != 0:
            raise AnsibleActionFail(f"infra_services: could not {what}: "
                                    f"{(res.get('stderr') or res.get('stdout') or '').strip()[-500:]}")
        return res.get("stdout", "")

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        units = check_units(self._task.args.get("units"))
        reload = self._task.args.get("daemon_reload", False)
        if not isinstance(reload, bool):
            raise AnsibleActionFail(f"infra_services: daemon_reload: expected true or false, got {reload!r}")
        if reload and not self._play_context.check_mode:
            self._systemctl(["daemon-reload"], "reload systemd's units")
        out = self._systemctl(["show", "--property=" + ",".join(PROPERTIES), "--"] + [u["name"] for u in units],
                              "read " + ", ".join(u["name"] for u in units))
        changed_units, why = [], {}
        for unit, have in zip(units, parse_show(out, len(units))):
            differ = differences(unit, have)
            if not differ:
                continue
            args = {k: unit[k] for k in ("name", "enabled", "state") if k in unit}
            sub = self._execute_module(module_name="ansible.legacy.systemd_service", module_args=args, task_vars=task_vars)
            if sub.get("failed"):
                # What the units before it changed stays changed, and is said.
                return {"failed": True, "msg": f"infra_services: {unit['name']}: {sub.get('msg', 'failed')}",
                        "changed": bool(changed_units), "changed_units": changed_units}
            if sub.get("changed"):
                changed_units.append(unit["name"])
                why[unit["name"]] = differ
        result.update(changed=bool(changed_units), changed_units=changed_units, differences=why)
        return result
