"""Logs leave every server (role rsyslog, playbooks/logging.yml): requests through the load
balancer, SSH login failures and database errors arrive on the log hosts, each in its server's
stream, over TLS with the servers' certificates only; the Sumo Logic stand-in
(lab/sumo_receiver.py) gets the same lines in Sumo's documented format; and, in the drills, a
receiver stopped for a minute under load loses nothing and receives nothing twice.

Which hosts send, which receive and which streams each server has are read from the inventory.
"""

import json
import re
import shlex
import subprocess
import time
import uuid

import pytest

from conftest import (CONNECT, SITE, address, get, holders, hosts_of, names_of, record_drill, site_address, site_setting,
                      wait_for)

testinfra_hosts = hosts_of("logging")
SERVERS = names_of("servers")
WEB = names_of("webservers")
LBS = names_of("loadbalancers")
DBS = names_of("db_primary", "db_replica")
REMOTE = site_setting("rsyslog_receiver_dir")
PORT = site_setting("rsyslog_port")
SUMO_ACCEPTED = "/var/lib/lab-sumo/accepted.jsonl"
SUMO_REJECTED = "/var/lib/lab-sumo/rejected.jsonl"
# The streams each server must have (the list), by the groups it is in.
STREAMS = {name: {"auth"} | ({"nginx-access", "nginx-error"} if name in WEB else set())
           | ({"haproxy"} if name in LBS else set()) | ({"mysql-error"} if name in DBS else set())
           for name in SERVERS}
# Seconds within which a line must reach the log host (the figure).
ARRIVES_WITHIN_S = 10

# Requests from the client through the load balancer, each with its own marker in the URL:
# one line per request, "marker status served-by". argv: count, marker prefix, pace (s), site.
REQUESTS = r"""
import re, subprocess, sys, time
count, prefix, pace, site = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
for i in range(count):
    started = time.time()
    marker = f"{prefix}-{i}"
    got = subprocess.run(["curl", "-sk", "--max-time", "10", "-w", "\n%{http_code}", f"https://{site}/?m={marker}"],
                         capture_output=True, text=True).stdout
    body, _, code = got.rpartition("\n")
    server = re.search(r'id="server">([a-z0-9-]+)<', body)
    print(marker, code or "000", server.group(1) if server else "-", flush=True)
    time.sleep(max(0.0, started + pace - time.time()))
"""

# One line over TLS to a log port, with a client certificate (or none: "-"): "sent" when the
# receiver kept the connection, "refused ..." when it ended the handshake or the connection.
# argv: address, port, CA file, cert, key, server name, line.
TLS_SEND = r"""
import socket, ssl, sys
address, port, ca, cert, key, name, line = sys.argv[1:8]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.load_verify_locations(ca)
if cert != "-":
    context.load_cert_chain(cert, key)
try:
    with socket.create_connection((address, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(line.encode() + b"\n")
            tls.settimeout(3)
            try:
                data = tls.recv(1)
            except socket.timeout:
                print("sent")
                sys.exit()
            print("refused: connection closed" if not data else "refused: unexpected data")
except ssl.SSLError as exc:
    print("refused:", exc.reason or exc)
except OSError as exc:
    print("refused:", exc)
"""

def stored(log_host, server, stream):
    """Every line the log host stored of a server's stream (empty if none yet)."""
    with log_host.sudo():
        return log_host.run(f"cat {REMOTE}/{server}/{stream}.log 2>/dev/null").stdout


def requests_through_the_site(count, prefix, pace=0.05):
    """[(marker, status, served_by)] of `count` requests from the client through the load balancer."""
    client = get("client")
    client.run_test(f"cat > /tmp/log_requests.py <<'EOF'\n{REQUESTS}\nEOF")
    out = client.check_output(f"python3 /tmp/log_requests.py {count} {prefix} {pace} {SITE}")
    return [tuple(line.split()) for line in out.splitlines()]


def markers(text, prefix):
    """{marker: lines holding it} of the request markers with this prefix in a stream's text."""
    found = {}
    for line in text.splitlines():
        for marker in set(re.findall(rf"[?&]m=({re.escape(prefix)}-[0-9]+)\b", line)):
            found[marker] = found.get(marker, 0) + 1
    return found


def sumo_lines(log_host, path):
    with log_host.sudo():
        return [json.loads(line) for line in log_host.run(f"cat {path} 2>/dev/null").stdout.splitlines() if line]


# --- Every stream of every server arrives --------------------------------------------------

def test_requests_through_the_load_balancer_reach_the_log_host_in_the_web_servers_stream(host):
    prefix = f"logmark-{uuid.uuid4().hex[:10]}"
    sent = requests_through_the_site(4 * len(WEB), prefix)
    assert all(code == "200" for _, code, _ in sent), sent
    started = time.time()
    assert {server for _, _, server in sent} <= set(WEB), sent
    expected = {web: {marker: 1 for marker, _, server in sent if server == web} for web in WEB}
    _, took = wait_for(lambda: all(markers(stored(host, web, "nginx-access"), prefix) == expected[web] for web in WEB),
                       ARRIVES_WITHIN_S, "each marker once, in the stream of the web server that answered it")
    print(f"{len(sent)} requests' lines on the log host within {took:.1f} s of the last answer")
    # The HAProxy log of the load balancer holding the site's address has every one of them, the
    # others' none.
    active = holders(site_address(get("client")))
    for lb in LBS:
        want = {m for m, _, _ in sent} if lb in active else set()
        wait_for(lambda: set(markers(stored(host, lb, "haproxy"), prefix)) == want or not want,
                 ARRIVES_WITHIN_S - (time.time() - started), f"every marker in {lb}'s haproxy stream")
        assert set(markers(stored(host, lb, "haproxy"), prefix)) == want, lb


@pytest.mark.parametrize("server", SERVERS)
def test_an_ssh_login_failure_appears_in_the_servers_auth_stream(host, server, lab_key):
    user = f"nobody{uuid.uuid4().hex[:8]}"
    subprocess.run(["ssh", "-i", str(lab_key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "IdentitiesOnly=yes",
                    "-o", "ControlMaster=no", "-o", "ControlPath=none", f"{user}@{address(server)}", "true"],
                   capture_output=True, timeout=60, check=False)
    line, took = wait_for(lambda: [x for x in stored(host, server, "auth").splitlines() if user in x],
                          ARRIVES_WITHIN_S, f"the refused login of {user} in {server}'s auth stream")
    assert any("sshd" in x for x in line), line
    # Filed under the server it came from, and nowhere else.
    for other in SERVERS:
        if other != server:
            assert user not in stored(host, other, "auth"), other


@pytest.mark.parametrize("server", DBS)
def test_a_refused_database_login_appears_in_the_servers_mysql_error_stream(host, server):
    user = f"nobody{uuid.uuid4().hex[:8]}"
    get(server).run(f"mariadb -u {user} -pwrong -e 'SELECT 1'")
    wait_for(lambda: user in stored(host, server, "mysql-error"), ARRIVES_WITHIN_S,
             f"MariaDB's 'Access denied' for {user} in {server}'s mysql-error stream")


@pytest.mark.parametrize("server", WEB)
def test_a_line_of_nginx_error_log_reaches_the_servers_nginx_error_stream(host, server):
    """A line appended the way nginx writes it: the file is followed (imfile), not a socket."""
    marker = f"errmark-{uuid.uuid4().hex[:10]}"
    web = get(server)
    with web.sudo():
        web.run_test(f"echo '2026/01/01 00:00:00 [error] 1#1: *1 {marker}' >> /var/log/nginx/error.log")
    wait_for(lambda: marker in stored(host, server, "nginx-error"), ARRIVES_WITHIN_S,
             f"{marker} in {server}'s nginx-error stream")


def test_every_server_has_each_of_its_streams_and_no_other(host):
    """After the tests above: each server's directory holds exactly the streams it should."""
    with host.sudo():
        listing = host.check_output(f"cd {REMOTE} && ls -1 */*.log")
    got = {}
    for path in listing.splitlines():
        server, _, stream = path.partition("/")
        got.setdefault(server, set()).add(stream.removesuffix(".log"))
    assert set(got) == set(SERVERS), got
    for server, streams in STREAMS.items():
        assert got[server] == streams, (server, got[server])


def test_stored_streams_rotate_and_the_receiver_writes_on_in_new_files(host, lab_key):
    """logrotate (the role's rule, forced) moves every stored stream aside; the next line of a
    server lands in a new file, not in the rotated one."""
    server = SERVERS[-1]
    with host.sudo():
        host.run_test("logrotate --force /etc/logrotate.d/infra-remote")
        rotated = host.check_output(f"ls {REMOTE}/{server}/").split()
    assert "auth.log" not in rotated and any(name.startswith("auth.log-") for name in rotated), rotated
    user = f"nobody{uuid.uuid4().hex[:8]}"
    subprocess.run(["ssh", "-i", str(lab_key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "IdentitiesOnly=yes",
                    "-o", "ControlMaster=no", "-o", "ControlPath=none", f"{user}@{address(server)}", "true"],
                   capture_output=True, timeout=60, check=False)
    wait_for(lambda: user in stored(host, server, "auth"), ARRIVES_WITHIN_S, f"{user} in the new auth.log of {server}")


@pytest.mark.parametrize("server", SERVERS)
def test_the_sumo_token_is_in_no_file_an_unprivileged_user_can_read(server):
    token = site_setting("rsyslog_sumologic_token")
    if not site_setting("rsyslog_sumologic_enabled") or not token:
        pytest.skip("no Sumo Logic destination in this inventory")
    target = get(server)
    # A pattern that matches the token but is not it: the command line (which sudo logs) holds no token.
    pattern = shlex.quote(f"[{token[0]}]{re.escape(token[1:])}")
    with target.sudo():
        holders = target.run(f"grep -rlP -- {pattern} /etc /var/spool/rsyslog /var/log").stdout.split()
        readable = target.run(f"sudo -u nobody grep -rlP -- {pattern} /etc /var/spool/rsyslog /var/log "
                              "2>/dev/null").stdout.split()
    assert holders == ["/etc/rsyslog.d/40-infra-forward.conf"], holders
    assert readable == [], f"readable by nobody: {readable}"


# --- Who may send ---------------------------------------------------------------------------

def test_the_log_port_opens_to_the_servers_only(host):
    target = address(host.ansible.get_variables()["inventory_hostname"])
    for source in [*SERVERS, "client"]:
        got = get(source).check_output("python3 -c %s %s %s", CONNECT, target, str(PORT))
        assert got == ("open" if source in SERVERS else "timeout"), f"{source} -> {target}:{PORT}: {got}"


def _send(sender, target, cert, key, line, name):
    return sender.check_output("python3 -c %s %s %s %s %s %s %s %s", TLS_SEND, target, str(PORT),
                               "/etc/ssl/infra/ca.pem", cert, key, name, line)


def test_only_a_servers_certificate_gets_a_line_stored(host):
    """From a server: its own client certificate is accepted (the control); no certificate, a
    self-signed one with the server's name, and the log host's own internal certificate (signed
    by the CA, but not a sender's name) are refused, and their lines stored nowhere."""
    log_host = host.ansible.get_variables()["inventory_hostname"]
    target = address(log_host)
    server = SERVERS[0]
    sender = get(server)
    marker = uuid.uuid4().hex[:12]

    def line(tag):
        return f"<13>1 - {server} test - auth - certmark-{tag}-{marker}"

    with sender.sudo():
        good = _send(sender, target, "/etc/ssl/infra/rsyslog-client.pem", "/etc/ssl/infra/rsyslog-client.key",
                     line("good"), log_host)
        none = _send(sender, target, "-", "-", line("none"), log_host)
        sender.run_test("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                        f"-subj /CN={server} -addext subjectAltName=DNS:{server} "
                        "-keyout /tmp/impostor.key -out /tmp/impostor.pem 2>/dev/null")
        impostor = _send(sender, target, "/tmp/impostor.pem", "/tmp/impostor.key", line("impostor"), log_host)
    with host.sudo():
        other = _send(host, target, "/etc/ssl/infra/rsyslog-server.pem", "/etc/ssl/infra/rsyslog-server.key",
                      line("other"), log_host)
    assert good == "sent", good
    assert none.startswith("refused"), none
    assert impostor.startswith("refused"), impostor
    assert other.startswith("refused"), other
    wait_for(lambda: f" test[-]: certmark-good-{marker}" in stored(host, server, "auth"), ARRIVES_WITHIN_S,
             "the line sent with the server's own certificate")
    # (sudo's own log of the commands above names the markers too: only the lines sent count.)
    with host.sudo():
        found = host.run(f"grep -rh -e ' test\\[-\\]: certmark-' {REMOTE}").stdout
    assert [line for line in found.splitlines() if marker in line and "certmark-good" not in line] == [], found


# --- Sumo Logic's format --------------------------------------------------------------------

def test_the_sumo_stand_in_receives_every_stream_in_sumos_format(host):
    """What production would send to a Cloud Syslog source: each server's streams, RFC 5424, TLS,
    the token in the structured data, accepted by the stand-in's check; nothing refused."""
    if not site_setting("rsyslog_sumologic_enabled"):
        pytest.skip("no Sumo Logic destination in this inventory")
    prefix = f"sumomark-{uuid.uuid4().hex[:10]}"
    sent = requests_through_the_site(2 * len(WEB), prefix)
    wait_for(lambda: {m for m, _, _ in sent} <= set(markers("\n".join(
        line["msg"] for line in sumo_lines(host, SUMO_ACCEPTED) if line["msgid"] == "nginx-access"), prefix)),
        ARRIVES_WITHIN_S, "every marker at the Sumo stand-in")
    accepted = sumo_lines(host, SUMO_ACCEPTED)
    assert {(line["hostname"], line["msgid"]) for line in accepted} >= \
        {(server, stream) for server, streams in STREAMS.items() for stream in streams}
    assert {line["tls"] for line in accepted} <= {"TLSv1.2", "TLSv1.3"}
    refused = [line for line in sumo_lines(host, SUMO_REJECTED) if "sumo-test-no-token" not in line["line"]]
    assert refused == [], refused[:3]


def test_the_sumo_stand_in_refuses_a_message_without_the_token(host):
    if not site_setting("rsyslog_sumologic_enabled"):
        pytest.skip("no Sumo Logic destination in this inventory")
    marker = f"sumo-test-no-token-{uuid.uuid4().hex[:8]}"
    target = site_setting("rsyslog_sumologic_host") if "{{" not in str(site_setting("rsyslog_sumologic_host")) \
        else address(host.ansible.get_variables()["inventory_hostname"])
    port = site_setting("rsyslog_sumologic_port")
    line = f"<13>1 2026-12-02T10:00:00Z web-01 test - auth - {marker}"
    got = host.check_output("python3 -c %s %s %s %s %s %s %s %s", TLS_SEND,
                            target, str(port), "/etc/ssl/infra/ca.pem", "-", "-",
                            host.ansible.get_variables()["inventory_hostname"], line)
    assert got == "sent", got
    wait_for(lambda: [x for x in sumo_lines(host, SUMO_REJECTED) if marker in x["line"]], ARRIVES_WITHIN_S,
             "the message without a token among those refused")
    assert not [x for x in sumo_lines(host, SUMO_ACCEPTED) if marker in x["msg"]]
    assert [x["reason"] for x in sumo_lines(host, SUMO_REJECTED) if marker in x["line"]] == \
        ["no token in the structured data"]


# --- The drill: the receiver down for a minute under load ----------------------------------

OUTAGE_S = 60


@pytest.mark.drill
def test_drill_receiver_down_for_a_minute_loses_nothing_and_duplicates_nothing(host):
    prefix = f"outage-{uuid.uuid4().hex[:8]}"
    client = get("client")
    client.run_test(f"cat > /tmp/log_requests.py <<'EOF'\n{REQUESTS}\nEOF")
    pace = 0.1
    count = int((OUTAGE_S + 20) / pace)
    client.run_test(f"setsid -f sh -c 'python3 /tmp/log_requests.py {count} {prefix} {pace} {SITE} > /tmp/outage.out "
                    f"2>&1; echo done >> /tmp/outage.out' > /dev/null 2>&1 < /dev/null")

    def printed():
        return [line.split()[0] for line in client.file("/tmp/outage.out").content_string.splitlines()
                if line.startswith(prefix)]

    def received():
        counts = {}
        for web in WEB:
            for marker, lines in markers(stored(host, web, "nginx-access"), prefix).items():
                counts[marker] = counts.get(marker, 0) + lines
        return counts

    time.sleep(5)
    # The receiver really stopped: its socket unit too (journald's socket would start it again
    # at the log host's next own line), and the log port refusing connections.
    with host.sudo():
        host.run_test("systemctl stop syslog.socket rsyslog.service")
    stopped, before_outage = time.time(), len(printed())
    try:
        target = address(host.ansible.get_variables()["inventory_hostname"])
        for web in WEB:
            got = get(web).check_output("python3 -c %s %s %s", CONNECT, target, str(PORT))
            assert got == "refused", f"the receiver still answers {web} ({got})"
        time.sleep(max(0.0, stopped + OUTAGE_S - time.time()))
        assert host.run("systemctl is-active rsyslog").stdout.strip() != "active", "the receiver came back by itself"
    finally:
        started = time.time()
        with host.sudo():
            host.run_test("systemctl start syslog.socket rsyslog.service")
    until_restart = printed()
    # Catch-up, from the start command: every line of a request answered before the receiver
    # was back, received (or
    # three minutes: what is still missing then is counted below).
    while not set(until_restart) <= set(received()) and time.time() - started < 180:
        time.sleep(1)
    caught_up = time.time() - started
    wait_for(lambda: client.file("/tmp/outage.out").contains("^done"), count * pace + 120, "the load's end")
    sent = [tuple(line.split()) for line in client.file("/tmp/outage.out").content_string.splitlines()
            if line.startswith(prefix)]
    answered = [(marker, server) for marker, code, server in sent if code == "200"]
    assert len(answered) == len(sent), [s for s in sent if s[1] != "200"][:5]
    settled = time.time()
    while len(received()) < len(answered) and time.time() - settled < ARRIVES_WITHIN_S + 20:
        time.sleep(1)
    counts = received()
    missing = [m for m, _ in answered if m not in counts]
    twice = {m: n for m, n in counts.items() if n > 1}
    figures = {"outage_s": round(started - stopped, 1), "requests": len(sent),
               "requests_during_outage": len(until_restart) - before_outage, "lines_received": sum(counts.values()),
               "missing": len(missing), "duplicated": len(twice), "catch_up_s": round(caught_up, 1)}
    record_drill("log_receiver_outage", figures)
    print(f"log receiver down {figures['outage_s']} s under load: {figures}")
    assert not missing, f"{len(missing)} lines lost: {missing[:5]}"
    assert not twice, f"{len(twice)} lines received twice: {list(twice.items())[:5]}"
