"""Overload limits in force on the live services (README, "Overload"), and the per-source rate
limit at work: what the kernel, nginx and HAProxy really run with, not what a file says.
"""

import re
import time

import pytest

from conftest import get, names_of
from lbstats import SITE_URL, delta, info, lb_behind_site, seconds, setting, stats, wrk

testinfra_hosts = ["ansible://client"]


def limits(server, pid):
    """Soft and hard 'Max open files' of a process."""
    with server.sudo():
        line = next(line for line in server.check_output(f"cat /proc/{pid}/limits").splitlines()
                    if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def nginx_setting(server, name):
    with server.sudo():
        return int(re.search(rf"^\s*{name}\s+(\d+);", server.check_output("nginx -T 2>/dev/null"), re.M).group(1))


def pids(server, pattern):
    return server.check_output(f"pgrep -f '{pattern}'").split()


@pytest.mark.parametrize("web", names_of("webservers"))
def test_nginx_workers_hold_twice_their_connections_in_open_files(web):
    server = get(web)
    connections = nginx_setting(server, "worker_connections")
    nofile = nginx_setting(server, "worker_rlimit_nofile")
    assert nofile >= 2 * connections
    workers = pids(server, "^nginx: worker process")
    assert workers
    for pid in workers:
        assert limits(server, pid)[0] == nofile, f"nginx worker {pid} on {web}"
    # The unit's LimitNOFILE (the drop-in) is what the master was started with.
    master = pids(server, "^nginx: master process")[0]
    assert limits(server, master) == (nofile, nofile)


@pytest.mark.parametrize("web", names_of("webservers"))
def test_https_listener_backlog_is_what_nginx_asks_and_the_kernel_allows(web):
    server = get(web)
    with server.sudo():
        config = server.check_output("nginx -T 2>/dev/null")
        listening = server.check_output("ss -Hltn 'sport = :443'")
    asked = int(re.search(r"listen \S+:443 ssl.* backlog=(\d+);", config).group(1))
    somaxconn = int(server.file("/proc/sys/net/core/somaxconn").content_string)
    # ss shows a listening socket's accept queue limit in Send-Q: the smaller of the two.
    assert somaxconn >= asked
    assert {int(line.split()[2]) for line in listening.splitlines()} == {asked}


@pytest.mark.parametrize("name", names_of("loadbalancers", "webservers"))
def test_every_kernel_setting_of_the_drop_ins_is_live(name):
    server = get(name)
    files = server.check_output("ls /etc/sysctl.d/ | grep '^60-infra-' || true").split()
    roles = server.ansible.get_variables()["group_names"]
    assert ("60-infra-haproxy.conf" in files) == ("loadbalancers" in roles)
    assert ("60-infra-nginx.conf" in files) == ("webservers" in roles)
    for drop_in in files:
        for line in server.file(f"/etc/sysctl.d/{drop_in}").content_string.splitlines():
            if line.strip() and not line.startswith("#"):
                key, value = (part.strip() for part in line.split("=", 1))
                live = server.file("/proc/sys/" + key.replace(".", "/")).content_string
                assert live.split() == value.split(), f"{name}: {key} is {live.strip()}, {drop_in} says {value}"


@pytest.mark.parametrize("name", names_of("loadbalancers"))
def test_haproxy_runs_with_its_limits(name):
    lb = get(name)
    live = info(lb)
    maxconn = int(live["Maxconn"])
    assert maxconn == int(setting(lb, r"^\s+maxconn (\d+)$"))
    rows = stats(lb)
    frontends = [int(row["slim"]) for (_, sv), row in rows.items() if sv == "FRONTEND"]
    assert sum(frontends) <= maxconn, "the frontends' limits add up to more than the process holds"
    # Two file descriptors per connection, from the unit's limit: every process has them.
    for pid in pids(lb, "^/usr/sbin/haproxy"):
        assert limits(lb, pid)[0] >= 2 * maxconn
    # Each web server: at most its maxconn at once, as many idle; nginx holds both, with spare.
    servers = {sv: int(row["slim"]) for (px, sv), row in rows.items() if px == "web" and sv not in ("FRONTEND", "BACKEND")}
    assert set(servers) == set(names_of("webservers"))
    balancers = len(names_of("loadbalancers"))
    for web, slim in servers.items():
        assert slim >= 1
        assert 2 * slim * balancers < nginx_setting(get(web), "worker_connections"), web
        assert rows[("web", web)]["status"].startswith("UP"), web


ONE_REQUEST = ("import ssl, sys, urllib.error, urllib.request\n"
               "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
               "try:\n    print(urllib.request.urlopen(sys.argv[1], context=ctx, timeout=10).status)\n"
               "except urllib.error.HTTPError as exc:\n    print(exc.code)\n")


def request(host, url=SITE_URL):
    """The status of one request from a host (python3: every lab host has it; curl not)."""
    return int(host.check_output("python3 -c %s %s", ONE_REQUEST, url))


def test_one_source_past_the_rate_limit_gets_429_while_an_allow_listed_one_gets_200(host):
    lbs = {name: get(name) for name in names_of("loadbalancers")}
    _, lb = lb_behind_site(host, lbs)
    limit = int(setting(lb, r"sc0_http_req_rate gt (\d+)"))
    period = seconds(setting(lb, r"http_req_rate\((\w+)\)"))
    before = stats(lb)
    # A burst from the client at full speed: past the limit within the first second.
    try:
        burst = wrk(host, 8, 4, threads=1)
        after = stats(lb)
        limited_then_reset(host, lb, burst, before, after, limit, period)
    finally:
        wait_for_reset(host, period)


def wait_for_reset(client, period):
    """Until the client is answered again (the tests after this one send it requests)."""
    started = time.time()
    while time.time() - started < 3 * period + 15:
        if client.run(f"curl -sk -o /dev/null -w '%{{http_code}}' {SITE_URL}").stdout == "200":
            return
        time.sleep(2)
    pytest.fail(f"the client is still refused {3 * period + 15:.0f} s after its burst")


def limited_then_reset(host, lb, burst, before, after, limit, period):
    """The burst was limited, a 429 says when to come back, the allow-listed host is answered."""
    assert burst["requests"] > limit, f"the burst sent {burst['requests']} requests, not past the limit {limit}"
    assert burst["non_2xx"] > 0, burst
    denied = delta(before, after, ("https-in", "FRONTEND"), "dreq")
    assert denied == delta(before, after, ("https-in", "FRONTEND"), "hrsp_4xx") >= burst["non_2xx"]
    assert burst["requests"] - burst["non_2xx"] <= limit * (4 / period + 2), "more got through than the limit allows"
    # Still limited: a 429 that says when to come back.
    headers = host.check_output(f"curl -sk -o /dev/null -D - {SITE_URL}")
    assert headers.split()[1] == "429", headers
    assert re.search(r"(?im)^retry-after: \d+", headers), headers
    # The monitoring host is allow-listed: answered meanwhile.
    monitor = get(names_of("monitoring")[0])
    assert request(monitor) == 200
    # The limit resets once the client slows down (wait_for_reset, whatever happened above).
