"""filter_plugins/reads.py: a raw read's output split into its marked sections."""

import pytest
from ansible.errors import AnsibleFilterError

from reads import infra_read_sections

NAMES = ["head", "derived", "stat", "pem"]


def test_sections_by_name_stripped():
    text = "ssh-ed25519 AAA c\n=== derived\nssh-ed25519 AAA\n=== stat\n600 root root\n=== pem\nabc  -\n"
    assert infra_read_sections(text, NAMES) == {
        "head": "ssh-ed25519 AAA c", "derived": "ssh-ed25519 AAA", "stat": "600 root root", "pem": "abc  -"}


def test_missing_sections_are_empty():
    # A file that is not there prints nothing; a read that stopped early prints no later mark.
    assert infra_read_sections("=== derived\n=== stat\n", NAMES) == {"head": "", "derived": "", "stat": "", "pem": ""}
    assert infra_read_sections("", NAMES) == dict.fromkeys(NAMES, "")


def test_a_mark_must_stand_alone_on_its_line():
    # "=== x" inside a line is content, not a mark.
    assert infra_read_sections("a === derived\n", NAMES)["head"] == "a === derived"


@pytest.mark.parametrize("text, message", [
    ("=== other\nx\n", "section 'other' is not among head, derived, stat, pem"),
    ("=== stat\n1\n=== stat\n2\n", "section 'stat' is marked twice"),
])
def test_reader_and_read_that_disagree_fail_naming_the_section(text, message):
    with pytest.raises(AnsibleFilterError, match=message):
        infra_read_sections(text, NAMES)


@pytest.mark.parametrize("text, names", [(None, NAMES), ("x", "head"), ("x", ["head", ""])])
def test_bad_arguments_fail(text, names):
    with pytest.raises(AnsibleFilterError, match="infra_read_sections"):
        infra_read_sections(text, names)


def test_a_read_through_an_emulated_terminal_reads_the_same():
    # A raw command under become, over a pty, answers through a terminal: lines end in \r\n.
    text = "ssh-ed25519 AAA c\n=== derived\nssh-ed25519 AAA\n=== stat\n600 root root\n=== pem\nabc  -\n"
    assert infra_read_sections(text.replace("\n", "\r\n"), NAMES) == infra_read_sections(text, NAMES)
