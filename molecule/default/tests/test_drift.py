"""A run with nothing to change takes shortcuts (README, "Speed"); none of them may hide drift.

Each shortcut of issue 19 gets its drift here (the firewall's: test_firewall), all undone by one
run of site.yml limited to two servers (the first load balancer and the last web server of the
inventory), with the tags of the roles that took the shortcut:

- the roles' own apt tasks skip the packages the common role's one transaction has just made
  sure of: a package removed by hand comes back, from that transaction;
- the hardware collectors' timers are found and switched off in one call: a timer switched on by
  hand goes off again, and the apt collector's timer still runs;
- the collector's sources are one file: a hand edit of it is undone, and a stray source file
  of its naming is removed;
- a host certificate found current costs one read: a key whose mode was opened by hand, and a
  certificate file with a line added, are both mended (the rsyslog client's, issued in the
  monitoring play), and rsyslog restarts; a web server's certificate removed by hand is issued
  again and nginx serves the new one (the certificate's install notifies the caller's handler);
- the roles' files are made sure of in one read of the server per group of files
  (action_plugins/infra_files.py): a file edited by hand, a mode opened, a drop-in directory
  removed, a file to be absent put back, each in a different role's group, are all mended and
  their handler runs (chrony restarted with its drop-in back); the certificates' deploy hook,
  made unexecutable on a load balancer, and the renewal's challenge port changed on the
  issuer, are mended by a `--tags certs` run limited to the issuer. The runs also prove that
  `--tags backup` alone works on a database server.
- the internal CA's modules on the controller run only where the CA differs from what they make:
  its key opened by hand to 0644 is closed again (by the run's pki play);
- the units' states are read in one call of systemd per task (action_plugins/infra_services.py):
  an exporter disabled and stopped by hand, and apt's timers stopped or disabled by hand, run
  and are enabled again;
- the backup role's SSH key and its line on each backup host are read, and their modules run
  only where they differ: the key's public file removed comes back (the same key), and the line
  removed from a backup host's authorized keys is added again;
- the certificates' hand-on is read from the issuer (its key, and each other load balancer's
  account, authorized keys and PEM), and its modules and push run only where they differ
  (test_certificate_hand_on_mends_what_differs);
- the backup hosts' account is read with getent, and its module runs only where it differs: its
  shell changed and its password unlocked by hand are put back
  (test_the_backup_store_account_is_mended_where_it_differs);
- the database servers' replication read is one raw call of the client that also carries the
  primary's semi-sync clients, and the primary waits for its replicas only where that read lacks
  one or a replica was mended: a replica stopped by hand is started, the primary waits for it,
  and a run with nothing to mend does not (test_db:
  test_a_replica_stopped_by_hand_runs_again_and_the_primary_waits_for_it).

The other drift (a changed file, a stopped service, a rule added by hand, a replica that
stopped) keeps its own tests: test_firewall, test_db, the idempotence step.
"""

import os
import stat

from conftest import certbot_issuer, get, names_of, playbook, recap, site_setting

PACKAGE = "prometheus-node-exporter-collectors"  # in exporters_packages: installed by common's transaction
APT_TIMER = "prometheus-node-exporter-apt.timer"
SOURCES = "/etc/otelcol-sumo/conf.d/infra-sources.yaml"
CERT = "/etc/ssl/infra/rsyslog-client"  # .key and .pem
STRAY = "/etc/otelcol-sumo/conf.d/infra-stray.yaml"
CHRONY = "/etc/chrony/chrony.conf"
SUDOERS = "/etc/sudoers.d/50-{user}"
NO_CLOCK = "/etc/systemd/system/chrony.service.d"
# The internal CA, on the controller: pki_dir's default, beside the inventory.
CA_KEY = os.path.join(os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"]), "pki", "ca.key")  # the lab's containers may not set the clock
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
RECIPIENTS = "/etc/infra-backup/recipients.txt"  # roles/backup/vars/main.yml: backup_recipients_file
BACKUP_KEY = "/etc/infra-backup/id_ed25519.pub"  # roles/backup/vars/main.yml: backup_ssh_key, .pub
RECEIVER = site_setting("backup_receiver")
EXPORTER = "prometheus-node-exporter"
DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/50-haproxy.sh"
INTRUDER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAddedByHandAddedByHandAddedByHandAddedBy intruder"
APT_TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")


def hardware_timers(server):
    """The collectors' timers other than the apt one, from systemd."""
    out = server.check_output("systemctl list-unit-files --no-legend --type=timer 'prometheus-node-exporter-*.timer'")
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] != APT_TIMER]


def switched_on(server, timer):
    return (server.run(f"systemctl is-enabled --quiet {timer}").rc == 0
            or server.run(f"systemctl is-active --quiet {timer}").rc == 0)


def test_a_run_with_shortcuts_still_undoes_drift():
    first, last = names_of("loadbalancers")[0], names_of("webservers")[-1]
    removed, edited = get(first), get(last)
    with removed.sudo(), edited.sudo():
        # Drift 1: a package of a role, removed by hand (its timers go with it).
        removed.run_test(f"DEBIAN_FRONTEND=noninteractive apt-get remove -y -q {PACKAGE}")
        assert not removed.package(PACKAGE).is_installed
        # Drift 2: a hardware collector's timer, switched on by hand.
        timer = hardware_timers(edited)[0]
        edited.run_test(f"systemctl enable --now {timer}")
        assert switched_on(edited, timer)
        # Drift 3: the sources' file edited by hand, and a stray source file beside it.
        wanted = edited.file(SOURCES).content_string
        edited.run_test(f"echo '# edited by hand' >> {SOURCES}")
        edited.run_test(f"cp {SOURCES} {STRAY}")
        # Drift 4: the host key readable by all, a line added to the certificate's file.
        certificate = edited.file(f"{CERT}.pem").content_string
        edited.run_test(f"chmod 0644 {CERT}.key && echo 'added by hand' >> {CERT}.pem")

        # Drift 5: files of infra_files groups, each in another role: chrony's configuration edited and
        # its drop-in directory removed, the admin's sudo rule opened to all, the package's default
        # site put back beside nginx's, the backups' recipients file opened.
        sudoers = SUDOERS.format(user=site_setting("common_admin_user"))
        chrony = edited.file(CHRONY).content_string
        assert edited.file(f"{NO_CLOCK}/no-clock.conf").exists
        chrony_started = edited.check_output("systemctl show chrony -p ExecMainStartTimestampMonotonic")
        edited.run_test(f"echo '# edited by hand' >> {CHRONY} && rm -r {NO_CLOCK} && chmod 0644 {sudoers} {RECIPIENTS}")
        edited.run_test(f"ln -s /etc/nginx/sites-available/default {DEFAULT_SITE}")
        # Drift 6: units of infra_services tasks: an exporter disabled and stopped, apt's timers
        # stopped on one server and disabled on the other (the lab's servers take updates daily).
        assert site_setting("common_unattended_upgrades_enabled") is True
        edited.run_test(f"systemctl disable --now --quiet {EXPORTER} && systemctl disable --quiet {APT_TIMERS[1]}")
        removed.run_test(f"systemctl stop {APT_TIMERS[0]}")
        assert not edited.service(EXPORTER).is_running and not edited.service(EXPORTER).is_enabled
        assert not removed.service(APT_TIMERS[0]).is_running

        # Drift 7: the certificates' deploy hook (certbot's infra_files group) made unexecutable;
        # on the issuer (the first load balancer, certbot_issuer's default), the renewal's
        # challenge port changed by hand (read with the certificate, set again by ini_file).
        removed.run_test(f"chmod 0644 {DEPLOY_HOOK}")
        renewal = removed.check_output("ls /etc/letsencrypt/renewal/*.conf")
        port = removed.check_output(f"sed -n 's/^http01_port = //p' {renewal}")
        assert port.isdigit(), f"{renewal} has no http01_port"
        removed.run_test(f"sed -i 's/^http01_port = .*/http01_port = 9/' {renewal}")
        # Drift 8: a key added by hand to the admin's authorized keys, their .ssh opened (both
        # in common's infra_files group now; Drift 1's package is found by dpkg's read first).
        home = edited.user(site_setting("common_admin_user")).home
        keys = edited.file(f"{home}/.ssh/authorized_keys").content_string
        edited.run_test(f"echo '{INTRUDER}' >> {home}/.ssh/authorized_keys && chmod 0755 {home}/.ssh")

        # Drift 9: the internal CA's key, on the controller, opened to 0644 (its modules run only
        # where the CA differs from what they make: filter infra_pki_ca_drift), and its directory
        # to 0755 (made sure of only where it is not a directory of mode 0700).
        os.chmod(CA_KEY, 0o644)
        os.chmod(os.path.dirname(CA_KEY), 0o755)

        # Drift 10: the backup role's SSH key (read with ssh-keygen -y, the module runs only where
        # it differs) loses its public file on the last web server, a database server; its line
        # goes from each backup host's authorized keys (read with their host keys).
        assert last in names_of("db_primary", "db_replica"), f"{last} is not a database server"
        backup_user = site_setting("backup_store_user")
        backup_hosts = [get(name) for name in names_of(site_setting("backup_host_group"))]
        line = f'command="sudo -n {RECEIVER} {last}",restrict ' + edited.file(BACKUP_KEY).content_string.strip()
        edited.run_test(f"rm {BACKUP_KEY}")
        for host in backup_hosts:
            with host.sudo():
                authorized = f"{host.user(backup_user).home}/.ssh/authorized_keys"
                assert line in host.file(authorized).content_string.splitlines(), f"{host.backend.hostname}: {line}"
                host.run_test(f"sed -i '\\|{RECEIVER} {last}\"|d' {authorized}")

        # Drift 11: the web server's certificate removed by hand: issued again, and served.
        address = edited.ansible.get_variables()["ansible_host"]
        served = f"echo | openssl s_client -connect {address}:443 -servername {last} 2>/dev/null | openssl x509 -noout -serial"
        serial = removed.check_output(served)
        assert serial.startswith("serial="), serial
        edited.run_test("rm /etc/ssl/infra/nginx.pem")
        rsyslog_pid = edited.check_output("systemctl show -p MainPID --value rsyslog")

        run = playbook("--limit", f"{first},{last}", "--tags", "common,pki,monitoring,web,backup")
        assert run.returncode == 0, run.stdout[-3000:]
        changed = recap(run)
        assert changed[first] >= 1 and changed[last] >= 1, changed
        # The certificate play as operators run it, on the issuer alone: it reads its peers' host
        # keys itself, so the other load balancers need not be in the run.
        run = playbook("--limit", first, "--tags", "certs")
        assert run.returncode == 0, run.stdout[-3000:]
        assert recap(run)[first] >= 2, run.stdout[-3000:]

        assert removed.package(PACKAGE).is_installed, "the package removed by hand is still missing"
        assert removed.service(APT_TIMER).is_running, "the apt collector's timer does not run again"
        assert not [t for t in hardware_timers(removed) if switched_on(removed, t)], \
            "the reinstalled package's hardware timers were left on"
        assert not switched_on(edited, timer), f"{timer}, switched on by hand, is still on"
        assert edited.service(APT_TIMER).is_running
        assert edited.file(SOURCES).content_string == wanted, "the hand edit of the sources is still there"
        assert not edited.file(STRAY).exists, "the stray source file is still there"
        key = edited.file(f"{CERT}.key")
        assert (key.mode, key.user, key.group) == (0o600, "root", "root"), "the key's mode was not mended"
        assert edited.file(f"{CERT}.pem").content_string == certificate, "the certificate's file was not mended"
        assert edited.check_output("systemctl show -p MainPID --value rsyslog") != rsyslog_pid, \
            "rsyslog was not restarted with its certificate mended"
        issued = edited.check_output("openssl x509 -noout -serial -in /etc/ssl/infra/nginx.pem")
        assert issued != serial, "the removed certificate came back with its old serial"
        assert removed.check_output(served) == issued, "nginx does not serve the certificate issued again"
        assert edited.file(CHRONY).content_string == chrony, "chrony's configuration keeps its hand edit"
        assert edited.file(f"{NO_CLOCK}/no-clock.conf").exists, "chrony's drop-in was not put back"
        assert edited.service("chrony").is_running
        assert edited.check_output("systemctl show chrony -p ExecMainStartTimestampMonotonic") != chrony_started, \
            "chrony was not restarted with its drop-in back"
        assert edited.file(sudoers).mode == 0o440 and edited.file(RECIPIENTS).mode == 0o600, "a mode opened by hand stayed"
        assert not edited.file(DEFAULT_SITE).exists, "the package's default site is enabled again"
        assert removed.file(DEPLOY_HOOK).mode == 0o755, "the deploy hook stays unexecutable"
        assert removed.check_output(f"sed -n 's/^http01_port = //p' {renewal}") == port, \
            "the renewal's challenge port keeps its hand edit"
        assert edited.file(f"{home}/.ssh/authorized_keys").content_string == keys, "the key added by hand stayed"
        assert stat.S_IMODE(os.stat(CA_KEY).st_mode) == 0o600, "the CA key opened by hand stayed open"
        assert stat.S_IMODE(os.stat(os.path.dirname(CA_KEY)).st_mode) == 0o700, "the CA directory opened by hand stayed open"
        assert edited.file(f"{home}/.ssh").mode == 0o700
        assert edited.service(EXPORTER).is_running and edited.service(EXPORTER).is_enabled, \
            "the exporter disabled and stopped by hand was not started and enabled again"
        assert line.endswith(" " + edited.file(BACKUP_KEY).content_string.strip()), \
            "the backup key's public file was not put back, the same key"
        for host in backup_hosts:
            with host.sudo():
                authorized = f"{host.user(backup_user).home}/.ssh/authorized_keys"
                assert line in host.file(authorized).content_string.splitlines(), \
                    f"{last}'s line is still missing from {host.backend.hostname}'s {authorized}"
        for server in (edited, removed):
            for timer in APT_TIMERS:
                assert server.service(timer).is_running and server.service(timer).is_enabled, \
                    f"{timer} on {server.backend.hostname}, stopped or disabled by hand, was not mended"


def test_certificate_hand_on_mends_what_differs():
    """On each other load balancer, the sync account's shell changed, the issuer's line removed
    from its authorized keys and HAProxy's PEM edited: one `--tags certs` run puts back the
    account and the line, and hands the issuer's PEM on again; the issuer's key then logs in."""
    issuer = certbot_issuer()
    peers = [name for name in names_of("loadbalancers") if name != issuer]
    assert peers, "the hand-on needs a second load balancer"
    user = site_setting("certbot_sync_user")
    with get(issuer).sudo():
        pem = get(issuer).check_output("ls /etc/haproxy/certs/*.pem").split()
        assert len(pem) == 1, pem
        wanted = get(issuer).check_output(f"sha256sum < {pem[0]}")
    lines = {}
    for name in peers:
        peer = get(name)
        with peer.sudo():
            authorized = f"{peer.user(user).home}/.ssh/authorized_keys"
            lines[name] = peer.file(authorized).content_string
            assert lines[name].strip(), f"{name}: no authorized key for {user}"
            peer.run_test(f"usermod -s /bin/bash {user} && : > {authorized} && echo '# edited' >> {pem[0]}")
            assert peer.check_output(f"sha256sum < {pem[0]}") != wanted

    run = playbook("--limit", "loadbalancers", "--tags", "certs")
    assert run.returncode == 0, run.stdout[-3000:]
    changed = recap(run)
    assert changed[issuer] >= 1 and all(changed[name] >= 2 for name in peers), changed

    for name in peers:
        peer = get(name)
        with peer.sudo():
            assert peer.user(user).shell == "/bin/sh", f"{name}: {user}'s shell was not mended"
            assert peer.file(f"{peer.user(user).home}/.ssh/authorized_keys").content_string == lines[name], \
                f"{name}: the issuer's line was not put back"
            assert peer.check_output(f"sha256sum < {pem[0]}") == wanted, f"{name}: the issuer's PEM was not handed on"
    # The issuer's key logs in and runs the install script: every other node says unchanged.
    with get(issuer).sudo():
        pushed = get(issuer).check_output(site_setting("certbot_push_script"))
    assert sorted(line.split(":")[0] for line in pushed.splitlines() if ": unchanged " in line) == sorted(peers), pushed
    # Nothing left to do: the reads find everything as wanted.
    run = playbook("--limit", "loadbalancers", "--tags", "certs")
    assert run.returncode == 0 and not any(recap(run).values()), run.stdout[-3000:]


def test_the_backup_store_account_is_mended_where_it_differs():
    """The account the database servers log in as is read before its module runs (raw getent):
    on each backup host, its shell changed and its password unlocked by hand are put back by a
    `--tags backup` run of the backup hosts."""
    user = site_setting("backup_store_user")
    hosts = names_of(site_setting("backup_host_group"))
    assert hosts, "no backup host in the inventory"
    for name in hosts:
        host = get(name)
        with host.sudo():
            assert host.user(user).shell == "/bin/sh" and host.user(user).password == "!"
            host.run_test(f"usermod -s /bin/bash -p '*' {user}")
            assert host.user(user).shell == "/bin/bash" and host.user(user).password == "*"

    run = playbook("--limit", ",".join(hosts), "--tags", "backup")
    assert run.returncode == 0, run.stdout[-3000:]
    assert all(recap(run)[name] >= 1 for name in hosts), recap(run)
    for name in hosts:
        host = get(name)
        with host.sudo():
            assert host.user(user).shell == "/bin/sh", f"{name}: {user}'s shell was not mended"
            assert host.user(user).password == "!", f"{name}: {user}'s password was not locked again"
    # Nothing left to do: the read finds the account as wanted.
    run = playbook("--limit", ",".join(hosts), "--tags", "backup")
    assert run.returncode == 0 and not any(recap(run).values()), run.stdout[-3000:]
