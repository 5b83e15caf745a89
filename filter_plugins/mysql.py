"""Filters for the database tier: server ids, topology checks, GTID positions.

Pure functions; bad input raises AnsibleFilterError naming the offending field.
"""

import hashlib
import re

from ansible.errors import AnsibleFilterError

MAX_SERVER_ID = 2**32 - 1
_MARIADB_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_MYSQL_GTID = re.compile(r"^([0-9a-fA-F-]{36})((?::\d+(?:-\d+)?)+)$")


def mysql_server_id(name):
    """Stable server id (1 .. 2**32-1) derived from a host's inventory name."""
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError("infra_mysql_server_id: the host name must be a non-empty string")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % MAX_SERVER_ID + 1


def check_server_ids(hosts, server_ids):
    """Check the database hosts' server ids (present, integers in range, all different).

    ``hosts`` are the database hosts (the groups themselves are checked by the filter
    infra_check_db_groups); ``server_ids`` maps each to its mysql_server_id. Returns ``hosts``
    sorted. Raises AnsibleFilterError naming mysql_server_id and the host.
    """
    seen = {}
    for host in sorted(set(hosts)):
        if host not in server_ids:
            raise AnsibleFilterError(f"mysql_server_id: no server id for host '{host}'")
        try:
            value = int(server_ids[host])
        except (TypeError, ValueError):
            raise AnsibleFilterError(
                f"mysql_server_id of {host}: '{server_ids[host]}' is not an integer") from None
        if not 1 <= value <= MAX_SERVER_ID:
            raise AnsibleFilterError(f"mysql_server_id of {host}: {value} is outside 1..{MAX_SERVER_ID}")
        if value in seen:
            raise AnsibleFilterError(
                f"mysql_server_id: {seen[value]} and {host} both have server id {value}")
        seen[value] = host
    return sorted(set(hosts))


def gtid_transactions(position):
    """Number of transactions a GTID position covers (MariaDB 'd-s-n,...' or MySQL 'uuid:1-5,...').

    MariaDB counts the sequence number reached in each replication domain; MySQL counts the
    transactions in each source's intervals. Within one replication history, the host with
    the larger figure has applied more.
    """
    if position is None:
        raise AnsibleFilterError("gtid position: missing")
    text = re.sub(r"\s+", "", str(position))
    if not text:
        return 0
    total = 0
    for part in text.split(","):
        mariadb = _MARIADB_GTID.match(part)
        mysql = _MYSQL_GTID.match(part)
        if mariadb:
            total += int(mariadb.group(3))
        elif mysql:
            for interval in mysql.group(2).strip(":").split(":"):
                low, _, high = interval.partition("-")
                total += int(high or low) - int(low) + 1
        else:
            raise AnsibleFilterError(f"gtid position: '{part}' is neither a MariaDB nor a MySQL GTID")
    return total


def _version_key(host, version):
    """'10.11.6-MariaDB...' -> (10, 11, 6); a version that is not one is an error naming the host."""
    match = re.match(r"^(\d+)[.](\d+)(?:[.](\d+))?", str(version or ""))
    if not match:
        raise AnsibleFilterError(f"server version of {host}: {str(version)[:60]!r} is not a version")
    return tuple(int(part or 0) for part in match.groups())


def most_advanced(positions, versions=None):
    """The host whose GTID position covers the most transactions.

    Of hosts with equal figures, the one running the oldest server version (``versions``: host
    to ``@@version``), since a server replicates from an older one and not from a newer one: the
    others can all follow it. Then the first by name.
    """
    if not isinstance(positions, dict) or not positions:
        raise AnsibleFilterError("gtid positions: need a non-empty mapping of host to position")
    if versions is not None and not isinstance(versions, dict):
        raise AnsibleFilterError("server versions: need a mapping of host to version")
    top = max(gtid_transactions(position) for position in positions.values())
    tied = sorted(host for host in positions if gtid_transactions(positions[host]) == top)
    if not versions:
        return tied[0]
    missing = [host for host in tied if host not in versions]
    if missing:
        raise AnsibleFilterError(f"server versions: none for {', '.join(missing)}")
    return min(tied, key=lambda host: (_version_key(host, versions[host]), host))


def replica_status(status):
    """A replica's state from ``community.mysql.mysql_replication`` (mode getreplica), whichever
    column names the server uses (MariaDB and MySQL before 8.0.22: ``Slave_*``; later MySQL:
    ``Replica_*``).

    Returns {'is_replica', 'io_running', 'sql_running', 'running', 'sql_state', 'io_error',
    'sql_error'}: booleans for the first four (``running`` = both threads), strings for the rest.
    """
    if not isinstance(status, dict):
        raise AnsibleFilterError(f"replica status: expected the getreplica result (a mapping), got {type(status).__name__}")

    def column(name):
        for prefix in ("Slave_", "Replica_"):
            if prefix + name in status:
                return status[prefix + name]
        return ""

    io_running = str(column("IO_Running")) == "Yes"
    sql_running = str(column("SQL_Running")) == "Yes"
    return {
        "is_replica": bool(status.get("Is_Replica", False)),
        "io_running": io_running,
        "sql_running": sql_running,
        "running": io_running and sql_running,
        "sql_state": str(column("SQL_Running_State") or ""),
        "io_error": str(status.get("Last_IO_Error") or ""),
        "sql_error": str(status.get("Last_SQL_Error") or ""),
    }


_VERTICAL_ROW = re.compile(r"^\*+ \d+\. row \*+$")
_VERTICAL_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*): ?(.*)$")


def mysql_vertical(text):
    """The rows of the database client's vertical output (``mysql -E`` / ``mariadb -E``), in order.

    Each row starts at its ``*** N. row ***`` line; each field is a line ``name: value``, the
    names right-aligned. A line that is neither continues the value before it (a value with a
    line break, an error message say). Returns a list of mappings, values as text: an empty
    list for empty output (SHOW REPLICA STATUS on a server that follows none). Text before the
    first row raises AnsibleFilterError: the client printed something else.
    """
    if not isinstance(text, str):
        raise AnsibleFilterError(f"infra_mysql_vertical: the client's output must be text, got {type(text).__name__}")
    rows, field = [], None
    for line in text.replace("\r\n", "\n").splitlines():
        if _VERTICAL_ROW.match(line.strip()):
            rows.append({})
            field = None
            continue
        if not rows:
            if line.strip():
                raise AnsibleFilterError(f"infra_mysql_vertical: expected a row's first line, got {line[:200]!r}")
            continue
        match = _VERTICAL_FIELD.match(line)
        if match and match.group(1) not in rows[-1]:
            field = match.group(1)
            rows[-1][field] = match.group(2)
        elif field is not None:
            rows[-1][field] += "\n" + line
        elif line.strip():
            raise AnsibleFilterError(f"infra_mysql_vertical: a row starts with {line[:200]!r}, not a field")
    return rows


# The sections of the mysql role's replication read (roles/mysql/tasks/replication.yml), each
# the client's vertical output of one statement after a line "=== NAME".
READ_SECTIONS = ("replica", "server", "semisync")
_READ_MARK = re.compile(r"^=== ([a-z]+)[ \t]*$", re.M)


def mysql_read(text):
    """The mysql role's replication read, by section (see READ_SECTIONS).

    Returns ``{'replica': rows of SHOW REPLICA STATUS (none on a server that follows no
    primary), 'server': its one row (read_only, version), 'semisync': the primary's status
    rows (Variable_name, Value)}``; a section the read did not print is empty, as is the whole
    for empty text (a host the run did not read). A mark not among READ_SECTIONS, or one
    marked twice, raises AnsibleFilterError naming it: the read and this reader disagree.
    """
    if not isinstance(text, str):
        raise AnsibleFilterError(f"infra_mysql_read: the read's output must be text, got {type(text).__name__}")
    # A read answered through a terminal (a raw command under become, over a pty) may end its lines in \r\n.
    parts = _READ_MARK.split(text.replace("\r\n", "\n"))
    if parts[0].strip():
        raise AnsibleFilterError(f"infra_mysql_read: output before the first section: {parts[0].strip()[:200]!r}")
    found = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name not in READ_SECTIONS or name in found:
            raise AnsibleFilterError(f"infra_mysql_read: section '{name}' is "
                                     f"{'marked twice' if name in found else 'not among ' + ', '.join(READ_SECTIONS)}")
        found[name] = mysql_vertical(body)
    return {"replica": found.get("replica", []), "server": (found.get("server") or [{}])[0],
            "semisync": found.get("semisync", [])}


class FilterModule:
    """Database filters."""

    def filters(self):
        """The database filters, by name."""
        return {
            "infra_mysql_server_id": mysql_server_id,
            "infra_check_db_server_ids": check_server_ids,
            "infra_gtid_transactions": gtid_transactions,
            "infra_gtid_most_advanced": most_advanced,
            "infra_mysql_replica_status": replica_status,
            "infra_mysql_vertical": mysql_vertical,
            "infra_mysql_read": mysql_read,
        }
