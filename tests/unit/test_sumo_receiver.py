"""The lab's Sumo Logic stand-in (lab/sumo_receiver.py) checks exactly Sumo's documented format:
RFC 5424, one message per line, the source's token as a structured-data ID. What the servers
send (the rsyslog role's infra_sumologic template, rendered) is accepted; the rest is refused."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
from sumo_receiver import parse  # noqa: E402  pylint: disable=wrong-import-position

TOKEN = "E5kTyaEcth45/DU81M236oU4vM8j1ZaqTpWgjXB6lod7cFTeq09zzMn5ErmM0O/3@41123"
# Sumo's own example, with the token it documents.
GOOD = f"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [{TOKEN}] An application event"


def test_sumo_example_is_accepted():
    got = parse(GOOD, TOKEN)
    assert got == {"pri": 165, "timestamp": "2003-10-11T22:14:15.003Z", "hostname": "mymachine.example.com",
                   "app": "evntslog", "procid": "-", "msgid": "ID47", "msg": "An application event"}


def test_what_the_servers_send_is_accepted():
    """The role's template: host, program, - PROCID, the stream as MSGID, the token, the line."""
    line = (f'<86>1 2026-12-02T10:00:01.123456+00:00 web-02 sshd 4242 auth [{TOKEN}] '
            'Failed password for invalid user x from 172.30.10.30 port 50000 ssh2')
    got = parse(line, TOKEN)
    assert (got["hostname"], got["app"], got["msgid"]) == ("web-02", "sshd", "auth")
    assert got["msg"].startswith("Failed password")


def test_the_token_may_come_with_other_structured_data():
    line = f'<165>1 - host app - - [exampleSDID@32473 iut="3" eventSource="App"][{TOKEN}] hi'
    assert parse(line, TOKEN)["msg"] == "hi"


@pytest.mark.parametrize("line, reason", [
    ("<165>1 2003-10-11T22:14:15.003Z host app - ID47 - no token", "no token"),
    ("<165>1 2003-10-11T22:14:15.003Z host app - ID47 [other@41123] wrong token", "another token"),
    (f"<165>Oct 11 22:14:15 host app: [{TOKEN}] RFC 3164, not 5424", "not an RFC 5424 header"),
    (f"<165>2 2003-10-11T22:14:15.003Z host app - ID47 [{TOKEN}] version 2", "VERSION"),
    (f"<999>1 2003-10-11T22:14:15.003Z host app - ID47 [{TOKEN}] pri", "PRI"),
    (f"<165>1 11/10/2003 host app - ID47 [{TOKEN}] date", "RFC 3339"),
    (f"<165>1 2003-10-11T22:14:15.003Z host app - ID47 [{TOKEN} no closing bracket", "malformed structured data"),
    (f"<165>1 2003-10-11T22:14:15.003Z host app - ID47 [{TOKEN}]glued", "no space"),
])
def test_what_sumo_drops_is_refused(line, reason):
    with pytest.raises(ValueError, match=reason):
        parse(line, TOKEN)
