"""Make sure Debian packages are installed, asking dpkg first.

The ``apt`` module opens apt's whole cache (seconds) to learn that every package is already
there. This action asks dpkg in one quick command which of the packages are installed, and
how old apt's package lists are; it hands the task to the ``apt`` module only when a package
is missing (removed by hand, say) or the lists are older than ``cache_valid_time``, the age at
which apt's own ``cache_valid_time`` would refresh them. The ``apt`` module then installs,
refreshes, honours check mode and fails as it always does.

Task arguments (those of ``ansible.builtin.apt`` it uses)::

    infra_packages:
      name: [nginx, ssl-cert]          # plain package names (a string for one)
      cache_valid_time: 3600           # optional: lists older than this (seconds) are refreshed
      update_cache: true               # optional, only with cache_valid_time (default true)
      install_recommends: false        # optional (default false)

A name that is not a plain package name (a version, a wildcard, an architecture) always goes
to the ``apt`` module. The result adds ``missing`` (the packages dpkg did not list as
installed) and ``lists_age`` (seconds; None when unknown).
"""

import re
import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

PLAIN = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
KEYS = ("name", "cache_valid_time", "update_cache", "install_recommends")
# apt's own rule (ansible.builtin.apt): the success stamp of the last update, else the lists' folder.
STAMPS = ("/var/lib/apt/periodic/update-success-stamp", "/var/lib/apt/lists")
READ = ("dpkg-query -W -f='${{db:Status-Abbrev}} ${{Package}}\\n' -- {names} 2>/dev/null; "
        "for stamp in " + " ".join(STAMPS) + "; do "
        "if [ -e \"$stamp\" ]; then echo \"lists-age $(( $(date +%s) - $(stat -c %Y \"$stamp\") ))\"; break; fi; done; true")


def check_args(args):
    """The task's arguments, checked: returns (names, cache_valid_time or None, install_recommends,
    update_cache).

    Raises AnsibleActionFail naming the field.
    """
    unknown = sorted(set(args) - set(KEYS))
    if unknown:
        raise AnsibleActionFail(f"infra_packages: unknown field(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    names = args.get("name")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise AnsibleActionFail(f"infra_packages: name: expected a package name or a non-empty list of them, got {names!r}")
    valid = args.get("cache_valid_time")
    if valid is not None:
        try:
            valid = int(valid)
        except (TypeError, ValueError):
            valid = -1
        if valid < 0:
            raise AnsibleActionFail(f"infra_packages: cache_valid_time: expected seconds, got {args.get('cache_valid_time')!r}")
    recommends = args.get("install_recommends", False)
    if not isinstance(recommends, bool):
        raise AnsibleActionFail(f"infra_packages: install_recommends: expected true or false, got {recommends!r}")
    # The lists are refreshed only when older than cache_valid_time: update_cache says no more.
    update = args.get("update_cache", True)
    if not isinstance(update, bool):
        raise AnsibleActionFail(f"infra_packages: update_cache: expected true or false, got {update!r}")
    if "update_cache" in args and valid is None:
        raise AnsibleActionFail("infra_packages: update_cache: needs cache_valid_time (the lists are refreshed "
                                "only when older than it)")
    return names, valid, recommends, update


def read_answer(out, names):
    """dpkg's answer (READ): returns (the names not installed, the lists' age in seconds or None).

    A package counts as installed when dpkg says ``ii`` (installed) or ``hi`` (installed and
    held); a name that is not a plain package name counts as missing (apt judges it).
    """
    installed, age = set(), None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "lists-age" and re.fullmatch(r"-?[0-9]+", fields[1]):
            age = int(fields[1])
        elif len(fields) == 2 and fields[0] in ("ii", "hi"):
            installed.add(fields[1])
    return [name for name in names if not PLAIN.match(name) or name not in installed], age


class ActionModule(ActionBase):
    """infra_packages: apt only when dpkg says a package is missing or the lists are stale."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(KEYS)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        names, valid, recommends, update = check_args(self._task.args)
        plain = [n for n in names if PLAIN.match(n)]
        missing, age = names, None
        if plain:  # dpkg-query without a name would list every package
            res = self._low_level_execute_command(READ.format(names=" ".join(shlex.quote(n) for n in plain)), sudoable=True)
            if res.get("rc") != 0:
                raise AnsibleActionFail("infra_packages: could not ask dpkg: "
                                        f"{(res.get('stderr') or res.get('stdout') or '').strip()[-500:]}")
            missing, age = read_answer(res.get("stdout", ""), names)
        stale = valid is not None and (age is None or age > valid)
        result.update(changed=False, missing=missing, lists_age=age)
        if not missing and not stale:
            return result
        args = {"name": names, "state": "present", "install_recommends": recommends}
        if valid is not None:
            args.update(cache_valid_time=valid, update_cache=update)
        sub = self._execute_module(module_name="ansible.legacy.apt", module_args=args, task_vars=task_vars)
        sub.update(missing=missing, lists_age=age)
        if stale and not sub.get("failed") and not self._task.check_mode:
            # The lists were stale by apt's own rule (the same stamps), so the module refreshed
            # them: their time goes where apt's cache_valid_time (and this action) reads it first.
            # A refresh that finds nothing new leaves the lists' folder as it was (the module then
            # even says cache_updated: false), and without the stamp the next task and every later
            # run would refresh again. The common role also has apt write it at every successful
            # refresh, the daily timer's included.
            self._low_level_execute_command(f"touch {STAMPS[0]}", sudoable=True)
        return sub
