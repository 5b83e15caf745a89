"""Unit tests of lab/labctl.py: host checks, image tags, and the one-line failures."""

import json
import os
import stat
from pathlib import Path

import pytest

import labctl

ROOT = Path(__file__).resolve().parents[2]


def host(name="web-01", image="debian12", address="172.30.10.11"):
    return {"name": name, "image": image, "address": address}


def test_valid_hosts_pass():
    labctl.validate_hosts([host(), host("web-02", "debian13", "172.30.10.12")], "172.30.10.0/24")


@pytest.mark.parametrize("hosts, message", [
    ([host(image="centos")], "unknown lab image 'centos'"),
    ([host(address="10.9.9.9")], "not a usable host address of 172.30.10.0/24"),
    ([host(address="172.30.10.1")], "the gateway"),
    ([host(address="not-an-ip")], "is not an IP address"),
    ([host(), host("web-02")], "address 172.30.10.11 is used twice"),
    ([host(), host(address="172.30.10.12")], "lab host 'web-01' is listed twice"),
    ([host(name="Web_01")], "must be lower-case letters"),
])
def test_bad_hosts_are_refused_naming_the_field(hosts, message):
    with pytest.raises(labctl.LabError, match=message):
        labctl.validate_hosts(hosts, "172.30.10.0/24")


def test_bad_subnet_is_refused():
    with pytest.raises(labctl.LabError, match="lab_subnet '172.30.10.0/33'"):
        labctl.validate_hosts([host()], "172.30.10.0/33")


def test_container_name_is_the_prefix_then_the_inventory_host():
    assert labctl.container_name("lab", "web-01") == "lab-web-01"
    assert labctl.container_name("mol", "lb-01") == "mol-lb-01"
    assert labctl.container_name("bench", "client") != labctl.container_name("lab", "client")


def test_image_tag_is_a_hash_of_the_recipe(monkeypatch):
    before = labctl.image_ref("debian12")
    assert before == labctl.image_ref("debian12")
    assert before.startswith("infra-lab/debian12:")
    assert before != labctl.image_ref("debian13")
    monkeypatch.setattr(labctl, "BASE_PACKAGES", labctl.BASE_PACKAGES + ["curl"])
    assert labctl.image_ref("debian12") != before


def test_lab_inventory_describes_diverse_hosts():
    hosts, subnet = labctl.load_inventory_hosts(str(ROOT / "inventory" / "lab"))
    by_name = {h["name"]: h for h in hosts}
    assert subnet == "172.30.10.0/24"
    assert {"lb-01", "lb-02", "web-01", "web-02", "web-03", "acme", "client"} <= set(by_name)
    assert by_name["web-02"]["image"] == "debian13"
    assert by_name["web-01"]["image"] == "debian12"
    assert {by_name["lb-01"]["image"], by_name["lb-02"]["image"]} == {"debian12", "debian13"}
    # Every container resolves the site's names to the floating address, no host's own.
    assert {tuple(h["extra_hosts"][0]) for h in hosts} == {("www.foobar.com", "172.30.10.5")}
    labctl.validate_hosts(hosts, subnet)


def test_site_address_moves_with_the_hosts_and_is_checked():
    site = {"address": "172.30.10.5", "names": ["www.foobar.com"]}
    hosts = [dict(host(), extra_hosts=labctl.site_entries(site, "web-01"))]
    moved = labctl.rebase_hosts(hosts, "172.30.10.0/24", "172.30.20.0/24")
    assert moved[0]["extra_hosts"] == [["www.foobar.com", "172.30.20.5"]]
    with pytest.raises(labctl.LabError, match="lab_site.address 172.30.10.11 is a lab host's address"):
        labctl.validate_hosts([dict(host(), extra_hosts=[["www.foobar.com", "172.30.10.11"]])], "172.30.10.0/24")
    with pytest.raises(labctl.LabError, match="lab_site.address 10.0.0.5 is not a usable host address"):
        labctl.validate_hosts([dict(host(), extra_hosts=[["www.foobar.com", "10.0.0.5"]])], "172.30.10.0/24")
    with pytest.raises(labctl.LabError, match="lab_site.names: 'Bad_Name'"):
        labctl.site_entries({"address": "172.30.10.5", "names": ["Bad_Name"]}, "web-01")
    with pytest.raises(labctl.LabError, match="lab_site must be a mapping"):
        labctl.site_entries(["172.30.10.5"], "web-01")


def test_scenarios_float_the_site_address_labctl_moves():
    """Each scenario's keepalived_vip (.config/molecule/config.yml, from its subnet) is the lab's
    site address where labctl moves it: the names every container resolves answer there."""
    import yaml  # pylint: disable=import-outside-toplevel
    from jinja2 import Environment  # pylint: disable=import-outside-toplevel

    hosts, subnet = labctl.load_inventory_hosts(str(ROOT / "inventory" / "lab"))
    expression = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())[
        "provisioner"]["inventory"]["group_vars"]["all"]["keepalived_vip"]
    env = Environment()
    env.globals["lookup"] = lambda kind, name: scenario_subnet
    env.filters["regex_replace"] = lambda value, pattern, repl: __import__("re").sub(pattern, repl, value)
    for scenario in ("default", "iptables"):
        spec = yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text())
        scenario_subnet = spec["provisioner"]["env"]["MOLECULE_LAB_SUBNET"]
        moved = labctl.rebase_hosts(hosts, subnet, scenario_subnet)
        vip = env.from_string(expression.replace("$$", "$")).render()
        assert vip == moved[0]["extra_hosts"][0][1] + "/24", scenario


def fake_bin(tmp_path, name, script):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    """A PATH where docker never answers; each test adds the fakes it needs."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_bin(bindir, "docker", "exit 1\n")
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setattr(labctl, "as_root", lambda cmd: cmd)
    monkeypatch.setattr(labctl, "Path", _NoSystemdPath)
    return bindir


class _NoSystemdPath(type(Path())):
    """Path that reports no systemd, so the engine is started by hand."""

    def is_dir(self):
        if str(self) == "/run/systemd/system":
            return False
        return super().is_dir()


def test_engine_that_cannot_start_fails_with_one_clear_line(fake_path, tmp_path, capsys):
    fake_bin(fake_path, "dockerd", "echo 'failed to start daemon: permission denied' >&2; exit 1\n")
    with pytest.raises(labctl.LabError) as err:
        labctl.ensure_engine(logfile=tmp_path / "dockerd.log", wait=5)
    text = str(err.value)
    assert "the Docker engine could not start" in text
    assert "failed to start daemon: permission denied" in text
    assert "\n" not in text


def test_main_prints_one_line_and_exits_1(fake_path, tmp_path, monkeypatch, capsys):
    fake_bin(fake_path, "dockerd", "exit 1\n")
    monkeypatch.setattr(labctl, "STATE", tmp_path / "state")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert labctl.main(["engine"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lab: the Docker engine could not start")


def test_unreachable_archive_fails_with_one_clear_line(fake_path):
    fake_bin(fake_path, "debootstrap",
             "echo 'I: Retrieving InRelease'; echo 'E: Failed getting release file http://mirror.invalid/dists/bookworm/Release'; exit 1\n")
    with pytest.raises(labctl.LabError, match="debootstrap could not reach the Debian archive") as err:
        labctl.build_image("debian12")
    assert "LAB_MIRROR" in str(err.value)


def test_scenario_moves_the_lab_hosts_to_its_subnet():
    hosts = [{"name": "lb-01", "image": "debian12", "address": "172.30.10.10"},
             {"name": "web-01", "image": "debian12", "address": "172.30.10.11"}]
    moved = labctl.rebase_hosts(hosts, "172.30.10.0/24", "172.30.20.0/24")
    assert [h["address"] for h in moved] == ["172.30.20.10", "172.30.20.11"]
    assert hosts[0]["address"] == "172.30.10.10"
    labctl.validate_hosts(moved, "172.30.20.0/24")


@pytest.mark.parametrize("new, message", [("172.30.20.0/25", "must be as large"), ("172.30.20.0/99", "subnet:")])
def test_scenario_subnet_must_fit(new, message):
    hosts = [{"name": "lb-01", "image": "debian12", "address": "172.30.10.10"}]
    with pytest.raises(labctl.LabError, match=message):
        labctl.rebase_hosts(hosts, "172.30.10.0/24", new)


def test_molecule_platforms_are_the_lab_inventory():
    """The scenarios' platforms (.config/molecule/config.yml) name the lab inventory's hosts and
    groups; create.yml starts them from inventory/lab, so images and aliases are read there."""
    import yaml  # pylint: disable=import-outside-toplevel
    from ansible.inventory.manager import InventoryManager  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel

    platforms = yaml.safe_load((ROOT / ".config/molecule/config.yml").read_text())["platforms"]
    manager = InventoryManager(loader=DataLoader(), sources=[str(ROOT / "inventory/lab")])
    inventory = {h.name: sorted(g.name for g in h.get_groups() if g.name != "all") for h in manager.get_hosts()}
    assert {p["name"]: sorted(p["groups"]) for p in platforms} == inventory


def test_connection_vars_are_plain_values_ansible_reads(tmp_path):
    """`up --connection-vars` writes an inventory source Ansible reads: the key and known hosts
    of this checkout, as plain values (a template is rendered for every task on every host)."""
    import shutil
    import subprocess
    import sys

    inv = tmp_path / "inv"
    shutil.copytree(ROOT / "inventory" / "lab", inv, ignore=shutil.ignore_patterns("pki", "lab_connection.yml"))
    key = tmp_path / "a dir" / "id_ed25519"  # a space: quoted right
    labctl.write_connection_vars(inv / "lab_connection.yml", key)
    assert "{{" not in (inv / "lab_connection.yml").read_text()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inv), "--host", "web-01"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    hostvars = json.loads(proc.stdout)
    assert hostvars["ansible_ssh_private_key_file"] == str(key)
    assert hostvars["ansible_ssh_common_args"] == (f"-o UserKnownHostsFile={key.parent / 'known_hosts'} "
                                                   "-o StrictHostKeyChecking=accept-new -o IdentitiesOnly=yes")


@pytest.mark.parametrize("inventory", ["lab", "production"])
def test_no_connection_setting_is_a_template(inventory):
    """An inventory's connection settings (ansible_user, ansible_ssh_*, ansible_host...) are
    plain values: each template among them is compiled again in every task's worker."""
    import yaml

    connection = ("ansible_host", "ansible_port", "ansible_user", "ansible_ssh", "ansible_connection",
                  "ansible_private_key_file", "ansible_become", "ansible_python_interpreter")
    found = []
    for path in sorted((ROOT / "inventory" / inventory).rglob("*.yml")):
        if "pki" in path.parts or path.name == "vault.yml":
            continue

        def walk(node, where):
            if isinstance(node, dict):
                for key, value in node.items():
                    if isinstance(key, str) and key.startswith(connection) and isinstance(value, str) and "{{" in value:
                        found.append(f"{path.relative_to(ROOT)}: {key}")
                    walk(value, where)
            elif isinstance(node, list):
                for item in node:
                    walk(item, where)

        walk(yaml.safe_load(path.read_text()), path)
    assert not found, f"templated connection settings: {found}"
