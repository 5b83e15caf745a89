#!/usr/bin/env python3
"""Ask a web server's health page over a load balancer's internal hop, as HAProxy's check does.

Usage: healthz.py SOCKET SERVER CA_FILE PATH

The server's address and port come from HAProxy's runtime API (`show servers state`), so the
request goes where HAProxy sends its traffic; TLS is verified against CA_FILE for the server's
name, as the backend's `verify required verifyhost` does. Exit 0 on a 200, 1 otherwise, with
one line saying what was seen.
"""

import socket
import ssl
import sys


def servers_state(path):
    """HAProxy's `show servers state`: a list of {field: value} per server."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"show servers state\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = next(line for line in lines if line.startswith("# be_id"))[2:].split()
    return [dict(zip(header, line.split())) for line in lines if line and line[0].isdigit() and " " in line]


def main(argv):
    path, server, ca_file, page = argv[1:5]
    found = [s for s in servers_state(path) if s.get("srv_name") == server]
    if not found:
        print(f"{server}: not a server of any backend of this load balancer")
        return 1
    address, port = found[0]["srv_addr"], int(found[0]["srv_port"])
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with socket.create_connection((address, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=server) as tls:
            tls.sendall(f"GET {page} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n".encode())
            status = tls.recv(4096).decode(errors="replace").split("\r\n", 1)[0]
    except (OSError, ssl.SSLError) as err:
        print(f"{server} ({address}:{port}): {err}")
        return 1
    print(f"{server} ({address}:{port}): {status}")
    return 0 if status.split()[1:2] == ["200"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
