"""Filters for database restores: which full backup and which archived binary logs bring the
data back to a given second, and which backup seeds a new replica.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

import calendar
import re
import time

from ansible.errors import AnsibleFilterError

_POINT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$")
_VERSION = re.compile(r"^([0-9]+)[.]([0-9]+)")
_GTID = re.compile(r"^([0-9]+-[0-9]+-[0-9]+(,[0-9]+-[0-9]+-[0-9]+)*)?$")
# A primary's archive set aside when its binary log started over (a restore, or a gap the archive
# found): <host>.before-restore-<UTC stamp> or <host>.before-gap-<UTC stamp>, the stamp its end.
_ASIDE = re.compile(r"^(?P<host>.+)[.]before-(restore|gap)-(?P<stamp>[0-9]{8}T[0-9]{6}Z)$")


def _stamp(epoch):
    """An epoch as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def _point_epoch(point, now):
    """``db_restore_point`` (UTC) as an epoch; '' means now. Refuses a bad or future time."""
    if point in (None, ""):
        return None
    if not isinstance(point, str) or not _POINT.match(point):
        raise AnsibleFilterError(f"db_restore_point: got {point!r}, expected a UTC time 'YYYY-MM-DD HH:MM:SS'")
    try:
        epoch = calendar.timegm(time.strptime(point, "%Y-%m-%d %H:%M:%S"))
    except ValueError as error:
        raise AnsibleFilterError(f"db_restore_point: {point!r} is not a time ({error})") from error
    if epoch > now:
        raise AnsibleFilterError(f"db_restore_point: {point} is in the future (now {_stamp(now)} UTC)")
    return epoch


def _major_minor(version):
    """'10.11.6-MariaDB-0+deb12u1' -> '10.11'; '' when unknown."""
    match = _VERSION.match(str(version or ""))
    return f"{match.group(1)}.{match.group(2)}" if match else ""


def _histories(binlogs, host):
    """The archive folders of ``host``, each with the span of time whose binary logs it holds:
    ``[(start, end, folder)]``, oldest first. A restore starts a new history (the server's binary
    log starts over), and moves the folder of the one before aside, named with its end."""
    ends = []
    for folder in binlogs or {}:
        match = _ASIDE.match(folder)
        if match and match.group("host") == host:
            ends.append((calendar.timegm(time.strptime(match.group("stamp"), "%Y%m%dT%H%M%SZ")), folder))
    ends.sort()
    spans, start = [], 0
    for end, folder in ends:
        spans.append((start, end, folder))
        start = end
    return spans + [(start, float("inf"), host)]


def infra_backup_restore_plan(catalog, point="", now=0, binlog_host="", target_version=""):
    """The newest full backup that ends at or before ``point`` and the archived binary logs after it.

    ``catalog`` is what the backup host's receiver lists (``infra-backup-receive --catalog``):
    ``{'backups': [description, ...], 'binlogs': {primary: [{'name', 'mtime', 'size'}, ...]}}``,
    each description holding at least ``name``, ``source``, ``server_version``, ``gtid``,
    ``start``, ``end``, ``size`` and ``sha256``. ``point`` is ``db_restore_point`` (UTC,
    ``YYYY-MM-DD HH:MM:SS``; '' for the latest state), ``now`` the controller's epoch,
    ``binlog_host`` the primary whose archive holds the binary logs, ``target_version`` the
    server version the backup must restore to (a physical backup restores to its own major
    version only).

    A restore starts a new history of the primary's binary logs: the plan reads the archive of
    the history that was live at the point, and a backup taken in it.

    Returns ``backup`` (the description), ``binlogs`` (file names, in order, from the one being
    written when the backup began), ``binlog_host``, ``binlog_folder`` (the archive folder), ``stop_datetime`` (one second past the
    point, for mariadb-binlog; '' for the latest state) and ``point`` (as given, or 'latest').
    Raises AnsibleFilterError naming db_restore_point when it is not a time, is in the future or
    is before the oldest backup, and when no backup fits the target's version.
    """
    if not isinstance(catalog, dict) or not isinstance(catalog.get("backups"), list):
        raise AnsibleFilterError("backup catalog: expected a mapping with a 'backups' list")
    epoch = _point_epoch(point, now)
    backups = sorted((b for b in catalog["backups"] if isinstance(b, dict) and b.get("sha256")),
                     key=lambda b: (b.get("end", 0), b.get("name", "")))
    if not backups:
        raise AnsibleFilterError("backups: the backup hosts hold no complete backup yet (run playbooks/db-backup.yml)")
    wanted = _major_minor(target_version)
    if wanted:
        fitting = [b for b in backups if _major_minor(b.get("server_version")) == wanted]
        if not fitting:
            versions = sorted({_major_minor(b.get("server_version")) for b in backups})
            raise AnsibleFilterError(
                f"db_restore_target runs {wanted}, but every backup is of {', '.join(versions)}: a physical "
                "backup restores to its own server version only (restore to a host of that version)")
        backups = fitting
    at = now if epoch is None else epoch
    start, _end, folder = next(span for span in _histories(catalog.get("binlogs"), binlog_host) if span[0] <= at < span[1])
    if not [b for b in backups if b["end"] <= at]:
        raise AnsibleFilterError(
            f"db_restore_point: {point} is before the oldest backup, {backups[0]['name']} "
            f"(consistent at {_stamp(backups[0]['end'])} UTC)")
    usable = [b for b in backups if b["end"] <= at and b["start"] >= start]
    if not usable:
        raise AnsibleFilterError(
            f"db_restore_point: {point or 'latest'} lies in the history begun by the restore of {_stamp(start)} UTC, "
            "and no backup was taken in it between that restore and the point: choose a point before that restore")
    backup = usable[-1]
    if not _GTID.match(str(backup.get("gtid", ""))):
        raise AnsibleFilterError(f"backup {backup.get('name')}: its GTID position {str(backup.get('gtid'))[:60]!r} is not one")
    files = (catalog.get("binlogs") or {}).get(folder, [])
    # A file last written before the backup began holds nothing the backup does not.
    binlogs = sorted(f["name"] for f in files if f.get("mtime", 0) >= backup["start"] - 60)
    return {
        "backup": backup,
        "binlogs": binlogs,
        "binlog_host": binlog_host,
        "binlog_folder": folder,
        "stop_datetime": _stamp(epoch + 1) if epoch is not None else "",
        "point": point or "latest",
    }


def infra_backup_seed_choice(catalog, version, given=None):
    """The backup a new replica running ``version`` is seeded from, or why there is none.

    ``catalog``: the backup host's catalog (as for infra_backup_restore_plan); ``version``: the
    replica's server version (``@@version``); ``given``: a backup description chosen by the caller
    (db-restore.yml's, whose history the restored primary continues), used when its version fits.

    Without ``given``: the newest complete backup of the replica's major version taken since the
    last restore of any primary (its archive folder set aside, ``<host>.before-restore-<stamp>``):
    a backup from before a restore belongs to a history the primary no longer has, even where its
    GTID numbers look alike. A gap in an archive (``before-gap``) breaks no history: a replica
    whose binary log started over was reseeded from the same one.

    Returns ``{'backup': description}``, or ``{'reason': text}`` (the caller then dumps the
    primary): no backup host catalog, no backup of that version, none since the last restore, or
    a GTID position that is not one. Raises AnsibleFilterError only for a catalog that is not one.
    """
    wanted = _major_minor(version)
    if not wanted:
        raise AnsibleFilterError(f"infra_backup_seed_choice: version {str(version)[:60]!r} is not a server version")
    if given:
        if not isinstance(given, dict) or "name" not in given:
            raise AnsibleFilterError("infra_backup_seed_choice: given must be a backup's description")
        if _major_minor(given.get("server_version")) != wanted:
            return {"reason": f"the restore's backup {given['name']} is of {_major_minor(given.get('server_version'))}, "
                              f"this server runs {wanted}"}
        return {"backup": given}
    if not isinstance(catalog, dict) or not isinstance(catalog.get("backups"), list):
        raise AnsibleFilterError("backup catalog: expected a mapping with a 'backups' list")
    restarts = [calendar.timegm(time.strptime(m.group("stamp"), "%Y%m%dT%H%M%SZ"))
                for m in map(_ASIDE.match, catalog.get("binlogs") or {}) if m and m.group(2) == "restore"]
    since = max(restarts, default=0)
    fitting = sorted((b for b in catalog["backups"] if isinstance(b, dict) and b.get("sha256")
                      and _major_minor(b.get("server_version")) == wanted),
                     key=lambda b: (b.get("end", 0), b.get("name", "")))
    if not fitting:
        return {"reason": f"no complete backup of a {wanted} server on the backup host"}
    usable = [b for b in fitting if b.get("start", 0) >= since and _GTID.match(str(b.get("gtid", ""))) and b.get("gtid")]
    if not usable:
        return {"reason": f"no backup of a {wanted} server with a GTID position since the last restore "
                          f"({_stamp(since)} UTC)"}
    return {"backup": usable[-1]}


class FilterModule:
    """Database restore filters."""

    def filters(self):
        """The filters of this module, by name."""
        return {"infra_backup_restore_plan": infra_backup_restore_plan,
                "infra_backup_seed_choice": infra_backup_seed_choice}
