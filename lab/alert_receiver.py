#!/usr/bin/env python3
"""The lab's webhook receiver: what a person would have received from Alertmanager.

Alertmanager POSTs each notification (its webhook JSON: status, alerts with labels and
annotations...) to this server, which appends it as one JSON line, with the time it arrived,
to a file that the tests read (molecule/default/tests/test_alerting.py). lab/support.yml runs it
as a systemd unit on the monitoring hosts, on loopback:

    lab/alert_receiver.py --listen 127.0.0.1:9099 --out /var/lib/lab-alerts/alerts.jsonl
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


def record(body, received):
    """The line to append for one POST body: the notification and when it arrived.
    ValueError if the body is not an Alertmanager notification."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("status") not in ("firing", "resolved") \
            or not isinstance(doc.get("alerts"), list):
        raise ValueError("not an Alertmanager notification (status firing/resolved and a list of alerts)")
    return json.dumps({"received": round(received, 3), **doc}, sort_keys=True) + "\n"


def read(path):
    """Every notification recorded in a file, oldest first."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Handler(BaseHTTPRequestHandler):
    """POST: record a notification (400 if it is none); anything else: 405."""

    server_version = "lab-alert-receiver"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413, "notification too large")
            return
        try:
            line = record(self.rfile.read(length), time.time())
        except ValueError as exc:
            self.send_error(400, str(exc))
            return
        with self.server.lock, open(self.server.out, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        self.send_error(405, "POST notifications here")

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(listen, out):
    """An HTTP server on ADDRESS:PORT recording into `out` (not yet serving)."""
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.out, server.lock = out, threading.Lock()
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9099", help="ADDRESS:PORT (default %(default)s)")
    parser.add_argument("--out", required=True, help="file that receives one JSON line per notification")
    args = parser.parse_args(argv)
    serve(args.listen, args.out).serve_forever()


if __name__ == "__main__":
    main()
