"""HTTPS end to end, from the outside client: the path every visitor takes.

The disruptive tests (a forced renewal by tag, a web server's nginx stopped) come last.
"""

import json
import re
import subprocess

import pytest

from conftest import SITE, container, get, hosts_of, names_of, playbook, recap, record_drill, served_by, site_setting

ROOTS = "/tmp/pebble-roots.pem"
testinfra_hosts = hosts_of("lab_support")
testinfra_hosts = [h for h in testinfra_hosts if h.endswith("//client")]


def webservers():
    return names_of("webservers")


@pytest.fixture(scope="module", autouse=True)
def pebble_roots(host):
    """pebble's root changes at every start: fetch it from its management interface."""
    host.run_test(f"curl -sSfk https://acme:15000/roots/0 -o {ROOTS}")
    assert "BEGIN CERTIFICATE" in host.file(ROOTS).content_string
    return ROOTS


def https(host, path="/", extra=""):
    out = host.check_output(f"curl -sS --cacert {ROOTS} {extra} -o /tmp/body -D /tmp/headers "
                            f"-w '%{{http_code}}' https://{SITE}{path}")
    return int(out), host.file("/tmp/headers").content_string, host.file("/tmp/body").content_string


def served_serial(host):
    return host.check_output(f"echo | openssl s_client -connect {SITE}:443 -servername {SITE} 2>/dev/null "
                             "| openssl x509 -noout -serial")


def test_site_answers_200_with_a_certificate_from_pebble(host):
    status, _, body = https(host)
    assert status == 200
    assert SITE in body
    issuer = host.check_output(f"echo | openssl s_client -connect {SITE}:443 -servername {SITE} "
                               f"-CAfile {ROOTS} -verify_return_error 2>/dev/null | openssl x509 -noout -issuer")
    assert "Pebble" in issuer


def test_successive_requests_reach_every_web_server(host):
    seen = {served_by(https(host)[2]) for _ in range(2 * len(webservers()) + 2)}
    assert seen == set(webservers())


def test_plain_http_redirects_to_https(host):
    out = host.check_output(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{SITE}/some/page?x=1")
    assert out == f"301 https://{SITE}/some/page?x=1"


def test_hsts_and_security_headers(host):
    _, headers, _ = https(host)
    hsts = re.search(r"(?im)^strict-transport-security: max-age=(\d+)", headers)
    assert hsts and int(hsts.group(1)) >= 31536000
    assert re.search(r"(?im)^x-content-type-options: nosniff", headers)
    assert not re.search(r"(?im)^server: .*[0-9]", headers), "a version number leaks"


@pytest.mark.parametrize("version, accepted", [
    ("-tls1", False), ("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)])
def test_only_tls_1_2_and_1_3_are_accepted(host, version, accepted):
    # SECLEVEL=0 lets the client offer old versions: only the server may refuse them.
    result = host.run(f"echo | openssl s_client -connect {SITE}:443 -servername {SITE} {version} "
                      "-cipher DEFAULT@SECLEVEL=0 2>&1")
    assert (result.rc == 0) is accepted, result.stdout[-400:]


@pytest.mark.parametrize("web", webservers())
def test_web_server_accepts_lb_with_an_internal_ca_certificate(web):
    lb = get(names_of("loadbalancers")[0])
    address = get(web).ansible.get_variables()["ansible_host"]
    result = lb.run(f"echo | openssl s_client -connect {address}:443 -servername {web} "
                    f"-CAfile /etc/ssl/infra/ca.pem -verify_hostname {web} -verify_return_error 2>&1")
    assert result.rc == 0, result.stdout[-400:]
    assert "Verify return code: 0 (ok)" in result.stdout


@pytest.mark.parametrize("web", webservers())
def test_nothing_answers_in_clear_on_a_web_server(web):
    server = get(web)
    assert not server.socket("tcp://0.0.0.0:80").is_listening
    lb = get(names_of("loadbalancers")[0])
    address = server.ansible.get_variables()["ansible_host"]
    body = lb.run(f"curl -s --max-time 5 http://{address}:443/").stdout
    assert "Served by" not in body


@pytest.mark.parametrize("web", webservers())
def test_stub_status_answers_on_loopback_only(web):
    server = get(web)
    assert "Active connections" in server.check_output("curl -s http://127.0.0.1:8080/nginx_status")
    assert not server.socket("tcp://0.0.0.0:8080").is_listening
    assert server.socket("tcp://127.0.0.1:8080").is_listening


def test_haproxy_exporter_and_stats_on_loopback_only():
    lb = get(names_of("loadbalancers")[0])
    metrics = lb.check_output("curl -s http://127.0.0.1:8404/metrics")
    assert "haproxy_backend_active_servers" in metrics
    assert not lb.socket("tcp://0.0.0.0:8404").is_listening


def test_json_access_log_records_request_time(host):
    https(host, "/?json-log-probe")
    lines = []
    for web in webservers():
        server = get(web)
        with server.sudo():
            lines += [json.loads(line) for line in server.check_output(
                "grep json-log-probe /var/log/nginx/access.json || true").splitlines()]
    assert lines, "the request is in no web server's access log"
    assert {"request_time", "upstream_addr", "x_forwarded_for", "ssl_protocol"} <= set(lines[-1])


def test_a_bad_nginx_config_never_replaces_a_good_one(host):
    web = webservers()[0]
    server = get(web)
    before = server.file("/etc/nginx/nginx.conf").sha256sum
    # Well-formed for the preflight checks (a shared cache and its size), refused by nginx -t
    # (a shared cache needs 8 pages at least): the template's validate.
    run = playbook("--tags", "web", "--limit", web, "-e", "nginx_tls_session_cache=shared:SSL:1k")
    assert run.returncode != 0
    assert 'session cache "shared:SSL:1k" is too small' in run.stdout + run.stderr, (run.stdout + run.stderr)[-2000:]
    assert server.file("/etc/nginx/nginx.conf").sha256sum == before
    assert https(host)[0] == 200


def container_started_at(name):
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container(name)],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_forced_renewal_by_tag_changes_the_serial_and_nothing_else(host):
    before = served_serial(host)
    started = container_started_at(names_of("loadbalancers")[0])
    # Visitors keep coming during the renewal: the reload must not cost one request.
    host.run_test(f"setsid -f sh -c 'for i in $(seq 150); do curl -s --cacert {ROOTS} -o /dev/null "
                  f"-w \"%{{http_code}}\\n\" https://{SITE}/; sleep 0.05; done > /tmp/during-renewal; "
                  f"echo done >> /tmp/during-renewal' >/dev/null 2>&1 < /dev/null")
    run = playbook("--tags", "certs", "-e", "certbot_force_renew=true")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    changed = recap(run)
    assert changed[names_of("loadbalancers")[0]] >= 1
    for web in webservers():
        assert changed.get(web, 0) == 0, f"{web} changed during a certs-only run"
    after = served_serial(host)
    assert after != before
    assert container_started_at(names_of("loadbalancers")[0]) == started
    status, _, _ = https(host)
    assert status == 200
    for _ in range(120):
        if host.file("/tmp/during-renewal").contains("^done"):
            break
        subprocess.run(["sleep", "0.5"], check=True)
    codes = host.file("/tmp/during-renewal").content_string.split()
    assert codes[-1] == "done" and codes[:-1] == ["200"] * 150, {c: codes.count(c) for c in set(codes)}


@pytest.mark.drill
def test_acme_ca_down_keeps_the_old_certificate_and_fails_clearly_then_renews(host):
    acme = get("acme")
    before = served_serial(host)
    # Down as seen from the network (connections refused), without restarting pebble: a real
    # CA keeps its accounts and roots across an outage, and pebble forgets both when it restarts.
    block = "iptables -{} INPUT -p tcp --dport 14000 -j REJECT --reject-with tcp-reset"
    with acme.sudo():
        acme.run_test(block.format("I"))
    try:
        run = playbook("--tags", "certs", "-e", "certbot_force_renew=true")
    finally:
        with acme.sudo():
            acme.run_test(block.format("D"))
    assert run.returncode != 0
    said = " ".join((run.stdout + run.stderr).split())
    assert f"certbot could not get a certificate for {SITE} from {site_setting('certbot_acme_server')}" in said
    assert "Failed to renew certificate" in said
    assert "keeps serving" in said
    assert served_serial(host) == before
    assert https(host)[0] == 200
    # The CA is back: the next renewal succeeds.
    run = playbook("--tags", "certs", "-e", "certbot_force_renew=true")
    assert run.returncode == 0, run.stdout[-2000:]
    renewed = served_serial(host)
    assert renewed != before
    assert https(host)[0] == 200
    record_drill("ACME CA down during a forced renewal", {
        "old_certificate_kept": True, "run_failed_clearly": True, "renewed_after_the_ca_returned": True,
        "serial_before": before.split("=")[-1], "serial_after": renewed.split("=")[-1]})


@pytest.mark.drill
def test_stopping_nginx_on_a_web_server_costs_no_request(host):
    web = webservers()[0]
    server = get(web)
    with server.sudo():
        server.run_test("systemctl stop nginx")
    try:
        codes = host.check_output(
            f"for i in $(seq 60); do curl -s --cacert {ROOTS} -o /dev/null -w '%{{http_code}}\\n' "
            f"https://{SITE}/; done")
        counts = json.dumps({c: codes.split().count(c) for c in set(codes.split())})
        record_drill("nginx stopped on a web server", {"requests": len(codes.split()),
                                                       "failed": sum(c != "200" for c in codes.split())})
        assert codes.split() == ["200"] * 60, counts
    finally:
        with server.sudo():
            server.run_test("systemctl start nginx")
