"""action_plugins/infra_check_vars.py: the checks per kind, the constraint clause, one option's messages."""

import pytest

import infra_check_vars as icv

CTX = {"groups": {"webservers": ["web-01"], "monitoring": []}, "hosts": ["web-01"]}


@pytest.mark.parametrize("kind, args, good, bad", [
    ("int", ["512..1048576"], [512, "4096", 1048576], [511, 1048577, "many", "4.5", True, None, [1]]),
    ("int", ["0.."], [0, "7"], [-1, "-1"]),
    ("int", ["..10"], [-5, 10], [11]),
    ("port", [], [1, "22", 65535], [0, 65536, -1, "ssh", True]),
    ("nonempty", [], ["x", [1], {"a": 1}], ["", [], {}, None]),
    ("minlen", ["12"], ["a" * 12], ["a" * 11, 123456789012]),
    ("haproxy_time", [], ["5s", "500ms", "1500", 100, "2m", "1d", "10us"], ["5 s", "soon", "5S", "-1s", "1.5s", "", True]),
    ("haproxy_time", ["1s..1m"], ["1s", "60s", "1m"], ["999ms", "61s", "1h"]),
    ("nginx_time", [], ["10m", "1d", "1h30m", "60", 60], ["10 m", "soon", "1.5h", ""]),
    ("duration", [], ["5s", "15d", "1h30m"], ["5", "5 s", "fast", ""]),
    ("size", [], ["256M", "1G", "1048576", 1048576, "64k"], ["lots", "256MB", "0", "-1M", "1.5G", ""]),
    ("ip", [], ["10.0.0.1", "::1", "0.0.0.0", "2001:db8::1"], ["999.1.1.1", "host", "10.0.0.0/8", "", 7]),
    ("ip", ["routable"], ["192.0.2.1", "2001:db8::1"], ["0.0.0.0", "::", "127.0.0.1", "localhost"]),
    ("cidr", [], ["10.0.0.0/8", "10.0.0.1", "2001:db8::/32"], ["10.0.0.0/40", "10.0.0.1/8", "any", "", 10]),
    ("host", [], ["pool.ntp.org", "10.0.0.1", "db-1"], ["bad..name", "has space", "-x", ""]),
    ("hostport", [], ["10.0.0.1:80", "[::1]:9090", "0.0.0.0:9090", "mon.example:9090"], ["10.0.0.1", ":80", "h:0", "h:70000", "a b:80"]),
    ("hostport", ["loopback"], ["127.0.0.1:8080", "[::1]:80", "localhost:80"], ["0.0.0.0:8080", "10.0.0.1:80"]),
    ("hostport", ["private"], ["127.0.0.1:8404", "10.1.2.3:8404", "192.168.1.1:1"], ["0.0.0.0:8404", "8.8.8.8:80"]),
    ("domain", [], ["www.foobar.com", "a-b.example.org"], ["WWW.Example.com", "www.example..com", "localhost", "-a.com", ""]),
    ("email", [], ["ops@example.com"], ["ops", "a@b", "a b@c.d"]),
    ("sshkey", [], ["ssh-ed25519 AAAAC3Nza test@x", "ecdsa-sha2-nistp256 AAAA="], ["not a key", "ssh-dss AAAA"]),
    ("hhmm", [], ["03:30", "23:59", "00:00"], ["25:00", "3:30", "12:60"]),
    ("package", [], ["nginx", "python3-pymysql", "g++"], ["Nginx", "x", "has space", ""]),
    ("abspath", [], ["/etc/x"], ["etc/x", "", 5]),
    ("mode", [], ["0640", "644", "1777"], ["999", 644, "rw-r--r--"]),
    ("regex", [], ["^nginx(-.*)?$", "x"], ["^nginx(", "[", 5]),
    ("url", ["https"], ["https://acme.example/dir"], ["http://acme.example/dir", "acme.example/dir", "https://", ""]),
    ("url", ["http", "https"], ["http://m.example/debian", "https://m.example"], ["ftp://m.example/debian"]),
    ("match", ["[a-z_][a-z0-9_-]{0,31}"], ["ops", "_x"], ["Ops", "9x", "", True]),
    ("notin", ["root", "admin"], ["ops"], ["root", "admin"]),
    ("group", [], ["webservers", "monitoring"], ["nosuch", "web-01"]),
    ("group_with_hosts", [], ["webservers"], ["monitoring", "nosuch"]),
    ("group_or_host", [], ["monitoring", "web-01", "10.0.0.0/8"], ["nosuch"]),
    ("keys", ["incoming", "outgoing"], [{"incoming": "deny"}, {}], [{"inbound": "deny"}, "x"]),
    ("required_keys", ["name", "port"], [{"name": "n", "port": 1, "x": 2}], [{"name": "n"}, []]),
    ("values", ["allow", "deny"], [{"a": "allow"}, {"a": ["deny", "allow"]}], [{"a": "drop"}, {"a": ["drop"]}, []]),
    ("keymatch", ["[A-Za-z-]+"], [{"X-Frame-Options": "DENY"}], [{"X Frame": "DENY"}, ["a"]]),
    ("unique", [], [[1, 2]], [[1, 1]]),
])
def test_each_kind_accepts_the_good_and_names_what_it_expects_of_the_bad(kind, args, good, bad):
    check = icv.KINDS[kind]
    for value in good:
        assert check(value, *args, _ctx=CTX) is None, (kind, value)
    for value in bad:
        expected = check(value, *args, _ctx=CTX)
        assert isinstance(expected, str) and expected, (kind, value)


def test_the_markers_accept_anything_of_the_declared_type():
    assert icv.check_type(["anything"]) is None
    assert icv.check_validated_by({"a": 1}, "the", "filter") is None


def test_the_constraint_clause_is_parsed_from_the_description():
    assert icv.parse_constraints("Listen. [check: nonempty; ip routable]") == [("nonempty", []), ("ip", ["routable"])]
    assert icv.parse_constraints("Cache. [check: match (off|none)( +x)*]") == [("match", ["(off|none)( +x)*"])]
    assert icv.parse_constraints("Email. [check: allow ''; email]") == [("allow", [""]), ("email", [])]
    assert icv.parse_constraints("No clause.") is None
    assert icv.strip_constraints("Port. [check: port]") == "Port."
    with pytest.raises(ValueError, match="unknown check kind 'prot'"):
        icv.parse_constraints("Port. [check: prot]")


@pytest.mark.parametrize("value, spec, expected", [
    ("many", {"type": "int"}, "an integer"),
    (True, {"type": "int"}, "an integer"),
    ("10.0.0.0/8", {"type": "list", "elements": "str"}, "a list (of str)"),
    (["a", ["b"]], {"type": "list", "elements": "str"}, "a list of str"),
    ("sometimes", {"type": "bool"}, "true or false"),
    ("k=v", {"type": "dict"}, "a mapping"),
    (["x"], {"type": "str"}, "a string"),
    ("pf", {"type": "str", "choices": ["ufw", "iptables"]}, "one of ufw, iptables"),
    (["TLSv1.1"], {"type": "list", "elements": "str", "choices": ["TLSv1.2"]}, "a list of TLSv1.2"),
])
def test_the_declared_type_is_checked_strictly(value, spec, expected):
    assert icv.check_declared_type(value, spec) == expected


@pytest.mark.parametrize("value, spec", [
    ("4096", {"type": "int"}), ("yes", {"type": "bool"}), ({"a": 1}, {"type": "dict"}), (3, {"type": "raw"}),
    (8080, {"type": "str"}), (["ufw"], {"type": "list", "elements": "str", "choices": ["ufw"]}),
])
def test_values_ansible_would_accept_pass_the_type_check(value, spec):
    assert icv.check_declared_type(value, spec) is None


def test_an_options_messages_name_it_its_value_and_what_is_expected():
    spec = {"type": "list", "elements": "str", "description": "Names. [check: nonempty; domain]"}
    assert icv.check_option("certbot_domains", [], spec) == ["certbot_domains: got [], expected a value that is not empty"]
    assert icv.check_option("certbot_domains", ["ok.example.com", "WWW.Example..com"], spec) == [
        "certbot_domains[1]: got 'WWW.Example..com', expected a lower-case DNS name such as www.example.com"]
    assert icv.check_option("certbot_domains", "a.example.com", spec) == [
        "certbot_domains: got 'a.example.com', expected a list (of str)"]


@pytest.mark.parametrize("value", ["false", "False", "no", "off", "0"])
def test_a_string_that_means_false_is_refused_naming_the_json_form(value):
    # -e firewall_allow_controller=false hands the string "false", which `when: x and y` reads as true.
    assert icv.check_option("firewall_allow_controller", value, {"type": "bool"}) == [
        f"firewall_allow_controller: got the string {value!r}, which a condition reads as true; expected the boolean "
        "false (on the command line, JSON: -e '{\"firewall_allow_controller\": false}')"]


@pytest.mark.parametrize("value", [True, False, "true", "yes", "on", "1"])
def test_a_boolean_or_a_string_that_means_true_passes(value):
    # -e certbot_force_renew=true (README) reads as true either way.
    assert icv.check_option("certbot_force_renew", value, {"type": "bool"}) == []


def test_allow_accepts_its_value_before_any_other_check():
    spec = {"type": "raw", "description": "Workers. [check: allow auto; int 1..1024]"}
    assert icv.check_option("nginx_worker_processes", "auto", spec) == []
    assert icv.check_option("nginx_worker_processes", "-2", spec) == [
        "nginx_worker_processes: got '-2', expected an integer from 1 to 1024"]


def test_a_secret_is_never_shown():
    spec = {"type": "str", "no_log": True, "description": "Passphrase. [check: minlen 12]"}
    assert icv.check_option("pki_ca_passphrase", "too-short", spec) == [
        "pki_ca_passphrase: got (hidden), expected a string of at least 12 characters"]


def test_haproxy_time_in_milliseconds():
    assert icv.haproxy_time_ms("2m") == 120000 and icv.haproxy_time_ms("10us") == 0
    assert icv.haproxy_time_ms("5 s") is None and icv.haproxy_time_ms(True) is None


def test_a_value_that_only_passes_another_variable_on_names_it():
    assert icv.alias_of("{{ infra_admin_networks | default([]) }}") == "infra_admin_networks"
    assert icv.alias_of("{{ common_ssh_port }}") == "common_ssh_port"
    assert icv.alias_of("{{ haproxy_frontend_maxconn | int * 2 }}") is None
    assert icv.alias_of(["{{ x }}"]) is None and icv.alias_of("plain") is None
