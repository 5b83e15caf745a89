"""The load balancers' pair, proven from the outside client: one of them holds the site's address
(keepalived, VRRP with unicast peers), every one serves the same certificate, and a forced renewal
while the address sits on a node that is not the issuer reaches every node.

The drills (the active node killed, then its HAProxy stopped, under load) are in
test_lb_failover.py.
"""

import time

from conftest import (SITE, address, certbot_issuer, get, hosts_of, holders, move_site_address, names_of, playbook, recap,
                      serial_at, site_address, site_setting)

testinfra_hosts = [h for h in hosts_of("lab_support") if h.endswith("//client")]
LBS = names_of("loadbalancers")
INSTALL = site_setting("certbot_install_script")


def test_the_site_name_leads_to_an_address_no_server_owns(host):
    """Every client resolves the site to the floating address, not to one load balancer's own."""
    assert site_address(host) not in [address(name) for name in LBS]


def test_exactly_one_load_balancer_holds_the_site_address(host):
    """Sampled for longer than VRRP's takeover time (about three advertisements): were the peers'
    advertisements dropped (firewall), every node would hold the address by now."""
    vip = site_address(host)
    seen = set()
    for _ in range(8):
        held = holders(vip)
        assert len(held) == 1, f"{vip} held by {held or 'no load balancer'}"
        seen.add(held[0])
        time.sleep(0.5)
    assert len(seen) == 1, f"{vip} moved between {seen} with nothing wrong"


def test_the_backup_node_knows_its_peer_is_the_master():
    """keepalived on the nodes without the address says BACKUP (heard the master's advertisements)."""
    for name in LBS:
        with get(name).sudo():
            said = get(name).check_output("journalctl -u keepalived -b --no-pager -o cat | "
                                          "grep -E 'Entering (MASTER|BACKUP|FAULT) STATE' | tail -1")
        assert "MASTER" in said or "BACKUP" in said, f"{name}: {said}"


def test_every_load_balancer_serves_the_site_certificate(host):
    """The same certificate, from the ACME CA, on every node: whichever holds the address serves it."""
    vip = site_address(host)
    serials = {name: serial_at(host, address(name)) for name in LBS}
    assert len(set(serials.values())) == 1, serials
    assert serial_at(host, vip) in serials.values()
    issuer_name = host.check_output(f"echo | openssl s_client -connect {vip}:443 -servername {SITE} 2>/dev/null "
                                    "| openssl x509 -noout -issuer")
    assert "Pebble" in issuer_name


def test_a_forced_renewal_with_the_address_on_another_node_reaches_every_node(host):
    """The CA validates through the node that holds the address, not the one that asked: HAProxy
    there forwards the challenge to the issuer's certbot; the issuer hands the certificate on."""
    vip = site_address(host)
    first = certbot_issuer()
    others = [name for name in LBS if name != first]
    move_site_address(vip, others[0])
    before = serial_at(host, vip)
    run = playbook("--tags", "certs", "-e", "certbot_force_renew=true")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert recap(run)[first] >= 1
    assert holders(vip) == [others[0]], "the address moved during the renewal"
    serials = {name: serial_at(host, address(name)) for name in LBS}
    assert set(serials.values()) == {serial_at(host, vip)} and before not in serials.values(), (before, serials)


def test_certbots_timer_run_hands_the_certificate_to_a_node_that_missed_it(host):
    """certbot's own renewals reach every node without Ansible: after each run of certbot's
    service on the issuer, a node whose certificate differs gets the issuer's."""
    first = certbot_issuer()
    other = next(name for name in LBS if name != first)
    node = get(other)
    with node.sudo():
        # The node missed a renewal: it serves its own stand-in (its key and certificate differ),
        # put in place by the install script (which returns once HAProxy serves it).
        node.check_output(f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN={SITE} "
                          f"-keyout /root/k.pem -out /root/c.pem 2>/dev/null && cat /root/c.pem /root/k.pem | {INSTALL}")
    assert serial_at(host, address(other)) != serial_at(host, address(first))
    issuer = get(first)
    with issuer.sudo():
        started = issuer.run("systemctl start certbot.service")
        said = issuer.check_output("journalctl -u certbot.service --no-pager -o cat -n 8")
    assert started.rc == 0, said
    # The hand-on said the node got the issuer's certificate, and the node serves it now.
    issued = serial_at(host, address(first))
    assert f"{other}: installed {issued}" in said, said
    assert serial_at(host, address(other)) == issued, said
