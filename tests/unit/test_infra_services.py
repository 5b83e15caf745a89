"""action_plugins/infra_services.py: the units checked, systemd's answer read, what differs.

SHOW is what `systemctl show --property=Id,LoadState,UnitFileState,ActiveState -- ...` printed on
a lab server (Debian 12, systemd 252) for five units, one of them unknown: the action reads that
answer through parse_show() and decides with differences(), as here."""

import pytest
from ansible.errors import AnsibleActionFail

from infra_services import check_units, differences, parse_show

SHOW = """Id=chrony.service
LoadState=loaded
ActiveState=active
UnitFileState=enabled

Id=apt-daily.timer
LoadState=loaded
ActiveState=inactive
UnitFileState=disabled

Id=nope.service
LoadState=not-found
ActiveState=inactive
UnitFileState=

Id=systemd-journald.service
LoadState=loaded
ActiveState=active
UnitFileState=static

Id=nginx.service
LoadState=loaded
ActiveState=failed
UnitFileState=enabled
"""


def answer():
    return parse_show(SHOW, 5)


def test_parse_show_gives_one_mapping_per_unit_in_order():
    units = answer()
    assert [u["Id"] for u in units] == ["chrony.service", "apt-daily.timer", "nope.service",
                                        "systemd-journald.service", "nginx.service"]
    assert units[2] == {"Id": "nope.service", "LoadState": "not-found", "ActiveState": "inactive", "UnitFileState": ""}


def test_parse_show_refuses_an_answer_for_another_number_of_units():
    with pytest.raises(AnsibleActionFail, match="answered for 5 units, 4 were asked"):
        parse_show(SHOW, 4)


def test_a_unit_as_wanted_differs_in_nothing():
    chrony, timer, _, _, nginx = answer()
    assert differences({"name": "chrony", "enabled": True, "state": "started"}, chrony) == []
    assert differences({"name": "apt-daily.timer", "enabled": False, "state": "stopped"}, timer) == []
    # A failed unit is stopped, as systemd_service counts it.
    assert differences({"name": "nginx", "state": "stopped"}, nginx) == []
    assert differences({"name": "nginx", "enabled": True}, nginx) == []


def test_a_unit_stopped_or_disabled_by_hand_differs():
    chrony, timer, _, _, nginx = answer()
    assert differences({"name": "apt-daily.timer", "enabled": True, "state": "started"}, timer) == ["enabled", "state"]
    assert differences({"name": "chrony", "enabled": False}, chrony) == ["enabled"]
    assert differences({"name": "chrony", "state": "stopped"}, chrony) == ["state"]
    assert differences({"name": "nginx", "enabled": True, "state": "started"}, nginx) == ["state"]


def test_what_is_not_plain_goes_to_the_module():
    _, _, missing, static, _ = answer()
    assert differences({"name": "nope", "state": "stopped"}, missing) == ["loaded"]
    # static is the module's to judge (it counts it as enabled): never taken as right here.
    assert differences({"name": "systemd-journald", "enabled": True}, static) == ["enabled"]
    assert differences({"name": "x", "state": "started"}, {"LoadState": "loaded", "ActiveState": "activating"}) == ["state"]
    assert differences({"name": "x", "enabled": True}, {}) == ["loaded"]


def test_check_units_keeps_good_units():
    units = [{"name": "chrony", "enabled": True, "state": "started"}, {"name": "certbot.timer", "enabled": False}]
    assert check_units(units) == units


@pytest.mark.parametrize("units, message", [
    (None, "units must be a non-empty list"),
    ([], "units must be a non-empty list"),
    (["chrony"], r"units\[0\] must be a mapping, got str"),
    ([{"name": "chrony", "state": "started", "masked": True}], r"units\[0\]: unknown field\(s\) masked"),
    ([{"state": "started"}], r"units\[0\].name: expected a unit name, got None"),
    ([{"name": "two words", "state": "started"}], r"units\[0\].name: expected a unit name"),
    ([{"name": "--all", "state": "started"}], r"units\[0\].name: expected a unit name"),
    ([{"name": "a", "state": "started"}, {"name": "a", "enabled": True}], r"units\[1\] \(a\).name: listed twice"),
    ([{"name": "chrony"}], r"units\[0\] \(chrony\): needs enabled, state or both"),
    ([{"name": "chrony", "enabled": "yes"}], r"units\[0\] \(chrony\).enabled: expected true or false, got 'yes'"),
    ([{"name": "chrony", "state": "restarted"}], r"units\[0\] \(chrony\).state: expected one of started, stopped"),
])
def test_check_units_names_the_unit_and_the_field(units, message):
    with pytest.raises(AnsibleActionFail, match=message):
        check_units(units)
