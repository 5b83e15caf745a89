"""Filters for the roles' raw reads: one command's output, split into the sections it marks.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# A section starts at a line "=== NAME" (a word: letters, digits, _ and -).
_MARK = re.compile(r"^=== ([A-Za-z0-9_-]+)[ \t]*$", re.M)


def infra_read_sections(text, names):
    """The sections of a raw read's output, by name.

    ``text`` is the output; a line ``=== NAME`` starts the section NAME, and what precedes the
    first mark is the section ``head``. ``names`` are the sections the read prints (``head``
    included when it prints one): each is in the result, stripped of the blank lines and spaces
    around it, empty when the output lacks it (a read that stopped early). A mark not in
    ``names``, or a name marked twice, raises AnsibleFilterError naming it: the read and its
    reader disagree.
    """
    if not isinstance(text, str):
        raise AnsibleFilterError(f"infra_read_sections: the read's output must be text, got {type(text).__name__}")
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        raise AnsibleFilterError("infra_read_sections: names must be a list of section names")
    # A read answered through a terminal (a raw command under become, over a pty) may end its lines in \r\n.
    parts = _MARK.split(text.replace("\r\n", "\n"))
    found = {"head": parts[0]}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name not in names or name in found:
            raise AnsibleFilterError(f"infra_read_sections: section '{name}' is {'marked twice' if name in found else 'not among ' + ', '.join(names)}")
        found[name] = body
    return {name: found.get(name, "").strip() for name in names}


class FilterModule:
    """The raw reads' filters."""

    def filters(self):
        return {"infra_read_sections": infra_read_sections}
