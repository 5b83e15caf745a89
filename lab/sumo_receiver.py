#!/usr/bin/env python3
"""The lab's stand-in for a Sumo Logic Cloud Syslog source: it checks the documented format.

Sumo Logic's Cloud Syslog source takes syslog over TLS (port 6514) as RFC 5424 messages, one per
line, each carrying the source's token as its structured data (``[TOKEN@41123]``); a message
that is not RFC 5424, or lacks the token, is dropped. This receiver does exactly that check and
nothing else: it proves the format the servers would send, not Sumo's service. Each accepted
message is one JSON line in ``--out``; each refused one, with the reason, in ``--rejected``.

    lab/sumo_receiver.py --listen 172.30.10.40:6515 --cert C --key K --token-file F \\
        --out /var/lib/lab-sumo/accepted.jsonl --rejected /var/lib/lab-sumo/rejected.jsonl
"""

import argparse
import json
import re
import socketserver
import ssl
import sys
import threading
import time

MAX_LINE = 64 * 1024 + 1024  # Sumo truncates messages over 64 KB

# RFC 5424, section 6: HEADER SP STRUCTURED-DATA [SP MSG]
HEADER = re.compile(
    r"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>\S{1,255}) "
    r"(?P<app>\S{1,48}) (?P<procid>\S{1,128}) (?P<msgid>\S{1,32}) (?P<rest>.*)\Z", re.S)
TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})\Z")
SD_NAME = r'[^\s=\]"]{1,32}'
SD_PARAM = rf'{SD_NAME}="(?:[^"\\\]]|\\["\\\]])*"'
SD_ELEMENT = re.compile(rf"\[(?P<id>{SD_NAME}|[^\s=\]\"]+@\d+)(?P<params>(?: {SD_PARAM})*)\]")


def parse(line, token):
    """The fields of one RFC 5424 message that carries ``token`` as a structured-data ID.

    ValueError naming what is wrong: not RFC 5424 (header, timestamp, structured data), or no
    token, or another token."""
    if not token:
        raise ValueError("the receiver has no token")
    head = HEADER.match(line)
    if not head:
        raise ValueError("not an RFC 5424 header (<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID)")
    if int(head["pri"]) > 191 or head["version"] != "1":
        raise ValueError(f"PRI {head['pri']} or VERSION {head['version']} out of RFC 5424")
    if head["timestamp"] != "-" and not TIMESTAMP.match(head["timestamp"]):
        raise ValueError(f"timestamp {head['timestamp']!r} is not RFC 3339")
    rest = head["rest"]
    ids = []
    if rest.startswith("-"):
        rest = rest[1:]
    else:
        while rest.startswith("["):
            element = SD_ELEMENT.match(rest)
            if not element:
                raise ValueError("malformed structured data")
            ids.append(element["id"])
            rest = rest[element.end():]
        if not ids:
            raise ValueError("no structured data (neither - nor [...])")
    if rest and not rest.startswith(" "):
        raise ValueError("no space between the structured data and the message")
    if token not in ids:
        raise ValueError("no token in the structured data" if not ids else "the structured data holds another token")
    return {"pri": int(head["pri"]), "timestamp": head["timestamp"], "hostname": head["hostname"],
            "app": head["app"], "procid": head["procid"], "msgid": head["msgid"], "msg": rest[1:]}


class Handler(socketserver.StreamRequestHandler):
    """One TLS connection: newline-framed messages, each checked and recorded."""

    def handle(self):
        server = self.server
        while True:
            raw = self.rfile.readline(MAX_LINE)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\n")
            now = round(time.time(), 3)
            try:
                fields = parse(line, server.token)
                record, out = {"received": now, "tls": self.request.version(), **fields}, server.out
            except ValueError as exc:
                record, out = {"received": now, "reason": str(exc), "line": line[:2048]}, server.rejected
            with server.lock, open(out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True) + "\n")


class TLSServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, context, token, out, rejected):
        super().__init__(address, Handler)
        self.context, self.token, self.out, self.rejected = context, token, out, rejected
        self.lock = threading.Lock()

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(30)
        try:
            tls = self.context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            sock.close()
            raise
        tls.settimeout(None)
        return tls, addr

    def handle_error(self, request, client_address):
        print(f"sumo-receiver: connection from {client_address[0]} failed: {sys.exc_info()[1]}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--token-file", required=True, help="file holding the source's token")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rejected", required=True)
    args = parser.parse_args(argv)
    with open(args.token_file, encoding="utf-8") as handle:
        token = handle.read().strip()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # Sumo: TLS 1.2 or newer, no plain TCP
    context.load_cert_chain(args.cert, args.key)
    host, _, port = args.listen.rpartition(":")
    with TLSServer((host, int(port)), context, token, args.out, args.rejected) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
