"""site.yml's preflight and its plays agree on which roles run where.

The preflight validates each server's roles and collects their packages from one map
(`infra_site_roles`); the plays then run those roles. A role added to a play but not to the
map would skip its validation and the package transaction: these tests fail first.
"""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SITE = yaml.safe_load((ROOT / "site.yml").read_text())


def preflight_map():
    """The preflight's {role: host pattern}."""
    plays = [p for p in SITE if "infra_site_roles" in p.get("vars", {})]
    assert len(plays) == 1, "exactly one preflight play declares infra_site_roles"
    return plays[0]["vars"]["infra_site_roles"]


def played_roles():
    """{role: host pattern} from the plays that run roles."""
    found = {}
    for play in SITE:
        for entry in play.get("roles", []):
            role = entry["role"] if isinstance(entry, dict) else entry
            assert role not in found, f"role {role} runs in two plays"
            found[role] = play["hosts"]
    return found


def test_preflight_map_and_plays_agree():
    assert preflight_map() == played_roles()


def test_plays_after_the_preflight_run_on_unions_of_groups():
    for play in SITE:
        if play.get("roles"):
            for part in play["hosts"].split(":"):
                assert part and part[0] not in "&!" and "*" not in part, (
                    f"play '{play['name']}': the preflight reads host patterns as unions of groups only")


@pytest.mark.parametrize("role", sorted(played_roles()))
def test_every_role_has_the_preflight_contract(role):
    tasks = ROOT / "roles" / role / "tasks"
    assert (tasks / "validate.yml").is_file(), f"{role}: tasks/validate.yml"
    packages = (tasks / "packages.yml").read_text()
    assert f"{role}_packages_wanted:" in packages, f"{role}: tasks/packages.yml must set {role}_packages_wanted"


@pytest.mark.parametrize("inventory", sorted(p.name for p in (ROOT / "inventory").iterdir() if p.is_dir()))
def test_preflight_play_covers_every_host_a_play_configures(inventory):
    """In each shipped inventory, the preflight's hosts include every host of every play."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    manager = InventoryManager(loader=DataLoader(), sources=[str(ROOT / "inventory" / inventory)])
    preflight = [p for p in SITE if "infra_site_roles" in p.get("vars", {})][0]
    checked = {h.name for h in manager.get_hosts(preflight["hosts"])}
    for role, pattern in played_roles().items():
        configured = {h.name for h in manager.get_hosts(pattern)}
        assert configured, f"{inventory}: no host for role {role} ({pattern})"
        assert configured <= checked, f"{inventory}: role {role} runs on {configured - checked} unchecked"
