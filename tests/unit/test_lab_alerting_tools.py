"""The lab's alerting helpers: the webhook receiver (what a person would have received) and the
collector of the test ACME CA's roots (the bundle the site probe trusts)."""

import json
import threading
import urllib.error
import urllib.request

import pytest

import acme_roots
import alert_receiver

NOTIFICATION = {"version": "4", "status": "firing", "receiver": "critical", "groupKey": "{}:{alertname=\"X\"}",
                "alerts": [{"status": "firing", "labels": {"alertname": "ReplicationStopped", "instance": "web-02"},
                            "annotations": {"summary": "Replication stopped on web-02"}}]}


# --- The webhook receiver ------------------------------------------------------------------

def test_a_notification_becomes_one_line_with_its_arrival_time():
    line = alert_receiver.record(json.dumps(NOTIFICATION).encode(), 1700000000.12345)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {"received": 1700000000.123, **NOTIFICATION}


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[]", b'{"status": "firing"}',
                                  b'{"status": "burning", "alerts": []}', b'{"alerts": {}, "status": "resolved"}'])
def test_anything_but_a_notification_is_refused(body):
    with pytest.raises(ValueError):
        alert_receiver.record(body, 0.0)


@pytest.fixture
def receiver(tmp_path):
    out = tmp_path / "alerts.jsonl"
    server = alert_receiver.serve("127.0.0.1:0", str(out))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", out
    server.shutdown()
    server.server_close()


def post(url, body):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.status


def test_the_server_records_each_post_in_order(receiver):
    url, out = receiver
    resolved = dict(NOTIFICATION, status="resolved")
    assert post(url, json.dumps(NOTIFICATION).encode()) == 200
    assert post(url, json.dumps(resolved).encode()) == 200
    got = alert_receiver.read(out)
    assert [n["status"] for n in got] == ["firing", "resolved"]
    assert got[0]["alerts"][0]["labels"]["instance"] == "web-02"
    assert got[0]["received"] <= got[1]["received"]


def test_the_server_answers_400_to_garbage_and_records_nothing(receiver):
    url, out = receiver
    with pytest.raises(urllib.error.HTTPError) as error:
        post(url, b"{broken")
    assert error.value.code == 400
    assert not out.exists()


# --- The ACME CA's roots ---------------------------------------------------------------------

def pem(body):
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


ROOT_A, ROOT_B, ROOT_C = pem("QUFB" * 16), pem("QkJC" * 16), pem("Q0ND" * 16)


def test_a_new_root_is_added_and_the_old_ones_kept():
    assert acme_roots.merge("", ROOT_A) == ROOT_A
    assert acme_roots.merge(ROOT_A, ROOT_B) == ROOT_A + ROOT_B


def test_a_root_already_there_is_not_added_twice_and_moves_last():
    assert acme_roots.merge(ROOT_A + ROOT_B, ROOT_A) == ROOT_B + ROOT_A
    # Whitespace differences (CRLF, indentation) do not make another certificate.
    assert acme_roots.merge(ROOT_A, ROOT_A.replace("\n", "\r\n")) == ROOT_A


def test_the_bundle_keeps_the_newest_roots_only():
    assert acme_roots.merge(ROOT_A + ROOT_B, ROOT_C, keep=2) == ROOT_B + ROOT_C


def test_an_answer_without_certificate_is_an_error():
    with pytest.raises(ValueError):
        acme_roots.merge(ROOT_A, "<html>pebble is starting</html>")


def test_main_writes_the_bundle_and_fails_cleanly_when_the_ca_is_down(tmp_path, monkeypatch, capsys):
    out = tmp_path / "roots.pem"

    class Answer:
        def __init__(self, text):
            self.text = text

        def read(self):
            return self.text.encode()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(acme_roots.ssl, "create_default_context", lambda cafile: None)
    monkeypatch.setattr(acme_roots.urllib.request, "urlopen", lambda url, timeout, context: Answer(ROOT_A))
    args = ["--url", "https://acme:15000/roots/0", "--ca", "ca.pem", "--out", str(out)]
    assert acme_roots.main(args) == 0 and out.read_text() == ROOT_A
    assert oct(out.stat().st_mode & 0o777) == "0o644"

    def refused(url, timeout, context):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    monkeypatch.setattr(acme_roots.urllib.request, "urlopen", refused)
    assert acme_roots.main(args) == 1
    assert "Connection refused" in capsys.readouterr().err
    assert out.read_text() == ROOT_A, "a failed fetch must keep the bundle"
