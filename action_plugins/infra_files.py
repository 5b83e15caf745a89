"""Make sure of several files and directories with one read of the host.

A ``template`` or ``copy`` task costs two calls on the host when nothing changes (a stat, then
the file module for the attributes). This action reads every listed path in one call (type,
mode, owner, group and the SHA-1 of a file's content), compares on the controller with what is
wanted, and hands only what differs to the ``copy`` and ``file`` actions, which write, validate,
report the diff and honour check mode as they always do. A run with nothing to change costs one
call for the whole list; a file edited by hand, a mode opened or a directory removed still
differs and is mended.

Task arguments::

    infra_files:
      files:
        - dest: /etc/chrony/chrony.conf             # an absolute path (required)
          template: chrony.conf.j2                  # a file's content: a template of the role's
                                                    # templates/ (rendered as the template module
                                                    # does), or content: "the text itself"
          owner: root                               # names, as the host knows them (or numeric ids)
          group: root
          mode: "0644"                              # octal, as a string
          validate: /usr/sbin/chronyd -p -f %s      # optional, run on the new file before it replaces the old
        - dest: /etc/systemd/system/chrony.service.d
          state: directory                          # file (default), directory or absent
          owner: root
          group: root
          mode: "0755"
          purge: "*.conf"                           # optional, a directory's: its files of that name
                                                    # pattern that no item of the task lists go

A ``template`` is rendered here, with the task's variables as they are (the ``template`` lookup
would first deep-copy all of them, once per file: most of a no-change run's cost of the file).

The same read lists a ``purge`` directory's entries of that pattern (not directories): those
the task does not list are removed, files of earlier versions and files put there by hand.

The items are made sure of in their order (a directory before the files in it). The result is
``changed`` when any item changed, with ``changed_paths`` (the paths written or removed, for the
caller's conditions) and ``diff`` (each changed item's diff, in ``--diff`` mode).
"""

import hashlib
import json
import os
import shlex

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible._internal._templating import _template_vars  # what the template module adds (ansible_managed...)

STATES = ("file", "directory", "absent")
KEYS = {"dest", "content", "template", "owner", "group", "mode", "validate", "state", "purge"}
# READ's argument for a purged directory: this prefix, the directory, "/", the name pattern.
PURGE = "purge:"

# Run on the host with the paths as arguments: one JSON object, path -> what it is now.
READ = r"""
import fnmatch, grp, hashlib, json, os, pwd, stat, sys
out = {}
for path in sys.argv[1:]:
    if path.startswith("purge:"):
        where, pattern = path[len("purge:"):].rsplit("/", 1)
        try:
            names = os.listdir(where)
        except (FileNotFoundError, NotADirectoryError):
            names = []
        out[path] = sorted(name for name in names if fnmatch.fnmatchcase(name, pattern)
                           and not os.path.isdir(os.path.join(where, name)))
        continue
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        out[path] = {"state": "absent"}
        continue
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    seen = {"state": kind, "mode": "%04o" % stat.S_IMODE(st.st_mode), "owner": owner, "group": group,
            "uid": st.st_uid, "gid": st.st_gid}
    if kind == "file":
        with open(path, "rb") as f:
            seen["sha1"] = hashlib.sha1(f.read()).hexdigest()
    out[path] = seen
print(json.dumps(out))
"""


def check_items(items):
    """The ``files`` argument, checked: a list of items, each with the fields it needs.

    Returns the items with ``state`` filled in and ``mode`` as a four-digit octal string.
    Raises AnsibleActionFail naming the item and the field.
    """
    if not isinstance(items, list) or not items:
        raise AnsibleActionFail("infra_files: files must be a non-empty list of items")
    checked, seen = [], set()
    for index, item in enumerate(items):
        where = f"infra_files: files[{index}]"
        if not isinstance(item, dict):
            raise AnsibleActionFail(f"{where} must be a mapping, got {type(item).__name__}")
        extra = sorted(set(item) - KEYS)
        if extra:
            raise AnsibleActionFail(f"{where}: unknown field(s) {', '.join(extra)} (known: {', '.join(sorted(KEYS))})")
        dest = item.get("dest")
        if not isinstance(dest, str) or not dest.startswith("/") or dest.rstrip("/") != dest or "\0" in dest:
            raise AnsibleActionFail(f"{where}.dest: expected an absolute path without a trailing slash, got {dest!r}")
        where = f"infra_files: files[{index}] ({dest})"
        if dest in seen:
            raise AnsibleActionFail(f"{where}.dest: listed twice")
        seen.add(dest)
        state = item.get("state", "file")
        if state not in STATES:
            raise AnsibleActionFail(f"{where}.state: expected one of {', '.join(STATES)}, got {state!r}")
        if state == "file" and ("content" in item) == ("template" in item):
            raise AnsibleActionFail(f"{where}: a file needs its content or its template, one of them")
        if state == "file" and not isinstance(item.get("content", item.get("template")), str):
            field = "content" if "content" in item else "template"
            raise AnsibleActionFail(f"{where}.{field}: expected a string, got {type(item[field]).__name__}")
        if state == "file" and "template" in item and not item["template"]:
            raise AnsibleActionFail(f"{where}.template: expected a template's file name, got ''")
        if state != "file" and {"content", "template", "validate"} & set(item):
            raise AnsibleActionFail(f"{where}: content, template and validate are for files only (state: {state})")
        if "purge" in item:
            pattern = item["purge"]
            if state != "directory":
                raise AnsibleActionFail(f"{where}.purge: for a directory only (state: {state})")
            if not isinstance(pattern, str) or not pattern or "/" in pattern or "\0" in pattern:
                raise AnsibleActionFail(f"{where}.purge: expected a file name pattern such as '*.conf', got {pattern!r}")
        want = dict(item, state=state)
        if state != "absent":
            for key in ("owner", "group", "mode"):
                if not isinstance(item.get(key), str) or not item[key]:
                    raise AnsibleActionFail(f"{where}.{key}: required, a non-empty string")
            mode = item["mode"]
            if not (mode.isdigit() and set(mode) <= set("01234567") and 3 <= len(mode) <= 4):
                raise AnsibleActionFail(f"{where}.mode: expected an octal mode such as '0644', got {mode!r}")
            want["mode"] = "%04o" % int(mode, 8)
        checked.append(want)
    return checked


def differences(want, have):
    """What differs between an item wanted (from check_items) and what the host has (READ).

    Returns a list of the fields that differ (``state``, ``content``, ``owner``, ``group``,
    ``mode``); empty when the item is as wanted.
    """
    if want["state"] == "absent":
        return [] if have.get("state") == "absent" else ["state"]
    if have.get("state") != want["state"]:
        return ["state"]
    found = []
    if want["state"] == "file":
        if hashlib.sha1(to_bytes(want["content"], errors="surrogate_or_strict")).hexdigest() != have.get("sha1"):
            found.append("content")
    found.extend(key for key in ("owner", "group", "mode") if _seen(have, key, want[key]) != want[key])
    return found


def _purge_argument(item):
    """READ's argument that lists a ``purge`` directory's entries (and the key of its answer)."""
    return f"{PURGE}{item['dest']}/{item['purge']}"


def purge_arguments(items):
    """READ's arguments that list the ``purge`` directories' entries, one per such item."""
    return [_purge_argument(item) for item in items if "purge" in item]


def stale(items, have):
    """The files READ found in ``purge`` directories that no item lists: their paths, sorted."""
    listed = {item["dest"] for item in items}
    found = []
    for item in items:
        if "purge" in item:
            names = have.get(_purge_argument(item), [])
            found.extend(f"{item['dest']}/{name}" for name in names if f"{item['dest']}/{name}" not in listed)
    return sorted(found)


def _seen(have, key, wanted):
    """The owner or group the host has, as a number where the item gives a numeric id."""
    if key in ("owner", "group") and wanted.isdigit():
        number = have.get("uid" if key == "owner" else "gid")
        return None if number is None else str(number)
    return have.get(key)


class ActionModule(ActionBase):
    """infra_files: several files and directories for one read of the host."""

    # No temporary folder of its own: a no-change run costs the read alone (the copy action
    # makes its own when it writes).
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("files",))

    def _python(self, task_vars):
        """The host's Python as Ansible is told it (ansible_python_interpreter, else ansible.cfg's
        interpreter_python); python3 from the PATH where that is left to discovery (auto)."""
        interpreter = str(C.config.get_config_value("INTERPRETER_PYTHON", variables=task_vars) or "")
        return interpreter if interpreter.startswith("/") else "python3"

    def _read(self, items, task_vars):
        paths = [item["dest"] for item in items]
        command = " ".join([shlex.quote(self._python(task_vars)), "-c", shlex.quote(READ)]
                           + [shlex.quote(p) for p in paths + purge_arguments(items)])
        res = self._low_level_execute_command(command, sudoable=True)
        if res.get("rc") != 0:
            raise AnsibleActionFail(f"infra_files: could not read {', '.join(paths)}: "
                                    f"{(res.get('stderr') or res.get('stdout') or '').strip()[-500:]}")
        try:
            found = json.loads(res["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise AnsibleActionFail(f"infra_files: unreadable answer from the host: {res.get('stdout', '')[-300:]!r}") from exc
        return found

    def _render(self, item, task_vars):
        """A ``template`` item's content, rendered as the template module renders it: the file
        found in the role's templates/, ansible_managed and the template_* variables added, blocks
        trimmed. The task's variables are copied shallowly (the template lookup deep-copies them)."""
        try:
            source = self._find_needle("templates", item["template"])
        except AnsibleError as exc:
            raise AnsibleActionFail(f"infra_files: {item['dest']}.template: {exc}") from exc
        searchpath = list(task_vars.get("ansible_search_path", [])) + [self._loader.get_basedir(), os.path.dirname(source)]
        searchpath = [path for base in searchpath for path in (os.path.join(base, "templates"), base)]
        variables = task_vars.copy()
        variables.update(_template_vars.generate_ansible_template_vars(
            path=item["template"], fullpath=source, dest_path=item["dest"],
            include_ansible_managed="ansible_managed" not in variables))
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=variables)
        data = trust_as_template(self._loader.get_text_file_contents(source))
        rendered = templar.template(data, escape_backslashes=False, overrides={"trim_blocks": True})
        return "" if rendered is None else rendered

    def _delegate(self, action, args, task_vars):
        task = self._task.copy()
        task.args.clear()
        task.args.update(args)
        handler = self._shared_loader_obj.action_loader.get(  # the copy action writes, validates, diffs
            action, task=task, connection=self._connection, play_context=self._play_context,
            loader=self._loader, templar=self._templar, shared_loader_obj=self._shared_loader_obj)
        return handler.run(task_vars=task_vars)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        items = [dict(item, content=self._render(item, task_vars)) if "template" in item else item
                 for item in check_items(self._task.args.get("files"))]
        have = self._read(items, task_vars)
        changed_paths, diffs, why = [], [], {}
        # A purged directory's stray files go after the items (the directory is made sure of first).
        for item in items + [{"dest": path, "state": "absent"} for path in stale(items, have)]:
            differ = differences(item, have.get(item["dest"], {}))
            if not differ:
                continue
            if item["state"] == "file":
                args = {k: item[k] for k in ("dest", "content", "owner", "group", "mode", "validate") if k in item}
                sub = self._delegate("ansible.legacy.copy", args, task_vars)
            else:
                args = {"path": item["dest"], "state": item["state"]}
                args.update({k: item[k] for k in ("owner", "group", "mode") if k in item})
                sub = self._execute_module(module_name="ansible.legacy.file", module_args=args, task_vars=task_vars)
            if sub.get("failed"):
                # What the items before it wrote stays written, and is said.
                sub["msg"] = f"infra_files: {item['dest']}: {sub.get('msg', 'failed')}"
                sub["changed_paths"] = changed_paths
                sub["changed"] = bool(changed_paths)
                return sub
            if sub.get("changed"):
                changed_paths.append(item["dest"])
                why[item["dest"]] = differ
                if sub.get("diff"):
                    diffs.extend(sub["diff"] if isinstance(sub["diff"], list) else [sub["diff"]])
        result.update(changed=bool(changed_paths), changed_paths=changed_paths, differences=why)
        if diffs:
            result["diff"] = diffs
        return result
