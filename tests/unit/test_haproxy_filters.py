"""filter_plugins/haproxy.py: HAProxy times."""

import pytest
from ansible.errors import AnsibleFilterError

from haproxy import FilterModule, haproxy_time_ms


@pytest.mark.parametrize("value, ms", [
    ("5s", 5000), ("500ms", 500), ("1500", 1500), (1500, 1500), ("2m", 120000), ("1h", 3600000),
    ("1d", 86400000), ("2500us", 2), ("0", 0), (" 10s ", 10000),
])
def test_haproxy_times_in_milliseconds(value, ms):
    assert haproxy_time_ms(value) == ms


@pytest.mark.parametrize("value", ["soon", "5 s", "5sec", "-1s", "1.5s", "", None, True, ["5s"], "5S"])
def test_what_haproxy_would_not_read_as_a_time_is_refused(value):
    with pytest.raises(AnsibleFilterError, match="is not an HAProxy time"):
        haproxy_time_ms(value)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"haproxy_time_ms"}
