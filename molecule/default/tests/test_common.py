"""The common baseline, tested on the live servers: SSH, sudo, time, upgrades."""

import json
import os
from pathlib import Path

import pytest

from conftest import SERVERS

testinfra_hosts = SERVERS

# The planned release of each host: the image the lab tool started it from (debian12,
# debian13), as create.yml recorded it from inventory/lab's lab_image.
EXPECTED_DEBIAN = {h["name"]: h["image"].removeprefix("debian") for h in json.loads(
    (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "lab-hosts.json").read_text())}


def test_debian_release_is_the_planned_one(host):
    """Diverse versions on purpose: web-02 runs Debian 13, the others Debian 12."""
    name = host.backend.get_hostname()
    want = EXPECTED_DEBIAN.get(name)
    if want is None:
        pytest.skip(f"no planned release for {name}")
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] == want


def test_admin_logs_in_with_key_and_gets_root(ssh_from_controller):
    result = ssh_from_controller(command="sudo -n id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_password_logins_are_refused(ssh_from_controller):
    result = ssh_from_controller("-o", "PubkeyAuthentication=no",
                                 "-o", "PreferredAuthentications=password,keyboard-interactive")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


@pytest.mark.parametrize("options", [
    ("Ciphers=aes128-cbc",),
    ("KexAlgorithms=diffie-hellman-group14-sha1",),
    # A MAC is only negotiated with a non-AEAD cipher.
    ("Ciphers=aes128-ctr", "MACs=hmac-sha1"),
], ids=["cbc-cipher", "sha1-kex", "sha1-mac"])
def test_weak_algorithms_are_refused(ssh_from_controller, options):
    result = ssh_from_controller(*[arg for opt in options for arg in ("-o", opt)])
    assert result.returncode == 255
    assert "no matching" in result.stderr, result.stderr


def test_root_cannot_log_in_even_with_an_authorized_key(host, ssh_from_controller, lab_key):
    """Give root the admin's key for a moment: sshd must still refuse root."""
    pub = lab_key.with_suffix(".pub").read_text().strip()
    with host.sudo():
        host.run_test("install -d -m 0700 /root/.ssh && cp -a /root/.ssh/authorized_keys "
                      "/root/.ssh/authorized_keys.bak 2>/dev/null; printf '%s\\n' '" + pub +
                      "' >> /root/.ssh/authorized_keys")
    try:
        result = ssh_from_controller(user="root")
    finally:
        with host.sudo():
            host.run_test("if [ -e /root/.ssh/authorized_keys.bak ]; then mv /root/.ssh/authorized_keys.bak "
                          "/root/.ssh/authorized_keys; else rm -f /root/.ssh/authorized_keys; fi")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_admin_user_has_no_password_and_sudo(host):
    user = host.user("ops")
    assert "sudo" in user.groups
    with host.sudo():
        status = host.check_output("passwd -S ops").split()
    assert status[1] == "L", status


def test_sshd_listens_and_runs_at_boot(host):
    assert host.socket("tcp://0.0.0.0:22").is_listening
    assert host.service("ssh").is_enabled


def test_chrony_runs_and_answers(host):
    assert host.service("chrony").is_running
    assert host.service("chrony").is_enabled
    result = host.run("chronyc -n sources")
    assert result.rc == 0, result.stderr
    assert "MS Name/IP address" in result.stdout


def test_unattended_upgrades_take_security_updates(host):
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running
    codename = host.system_info.codename
    with host.sudo():
        result = host.run("unattended-upgrade --dry-run --debug")
    assert result.rc == 0, result.stderr
    out = result.stdout + result.stderr
    assert f"codename={codename}-security" in out
    assert "Allowed origins are:" in out


def test_a_refresh_of_the_package_lists_is_recorded(host):
    """apt records each successful refresh (update-success-stamp): the roles' cache_valid_time
    counts from it, so lists refreshed without news are not refreshed again at every run."""
    stamp = "/var/lib/apt/periodic/update-success-stamp"
    with host.sudo():
        host.run_test(f"touch -d '2 days ago' {stamp}")
        before = host.file(stamp).mtime
        host.run_test("apt-get update -qq")
        assert host.file(stamp).mtime > before, f"{stamp} did not move with a successful refresh"
