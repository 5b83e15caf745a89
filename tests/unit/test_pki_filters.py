"""filter_plugins/pki.py: whether a server's key and certificate are what the internal CA would issue."""

import datetime
import ipaddress

import pytest
from ansible.errors import AnsibleFilterError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki import FilterModule, infra_pki_cert_drift

NOW = datetime.datetime(2026, 12, 3, tzinfo=datetime.timezone.utc)
SANS = ["DNS:web-01", "DNS:www.foobar.com", "IP:172.30.10.21"]


def pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def make_ca(name="infra CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return key, cert


CA_KEY, CA = make_ca()
HOST_KEY = ec.generate_private_key(ec.SECP256R1())


def issue(sans=SANS, usages=(ExtendedKeyUsageOID.SERVER_AUTH,), days=365, key=HOST_KEY, ca=(CA_KEY, CA)):
    names = [x509.DNSName(s[4:]) if s.startswith("DNS:") else x509.IPAddress(ipaddress.ip_address(s[3:]))
             for s in sans]
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0].partition(":")[2])]))
            .issuer_name(ca[1].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .sign(ca[0], hashes.SHA256()))


def read(cert=None, key=HOST_KEY, key_stat="600 root root", cert_stat="644 root root", extra="", rc=0):
    cert = cert or issue()
    return {"rc": rc, "stdout": f"stat nginx.key {key_stat}\nstat nginx.pem {cert_stat}\n"
                                f"{pem(key.public_key())}{pem(cert)}{extra}".rstrip("\n")}


def drift(result, sans=SANS, usages=("serverAuth",), renew=30, group="root", ca=None):
    return infra_pki_cert_drift(result, pem(ca or CA), "nginx", sans, list(usages), renew, group, now=NOW)


def test_a_current_certificate_has_no_drift():
    assert drift(read()) == []
    assert FilterModule().filters()["infra_pki_cert_drift"] is infra_pki_cert_drift


def test_a_key_readable_by_its_group_wants_0640_and_that_group():
    assert drift(read(key_stat="640 root mysql"), group="mysql") == []
    assert "nginx.key: mode" in drift(read(), group="mysql")[0]


@pytest.mark.parametrize("case, result, reason", [
    ("missing", read(rc=1), "missing or unreadable"),
    ("key mode", read(key_stat="644 root root"), "nginx.key: mode, owner, group ('644', 'root', 'root')"),
    ("cert owner", read(cert_stat="644 www-data root"), "nginx.pem: mode, owner, group ('644', 'www-data', 'root')"),
    ("another key", read(cert=issue(key=ec.generate_private_key(ec.SECP256R1()))), "not the key's"),
    ("another CA", read(cert=issue(ca=make_ca("other"))), "not signed by the internal CA"),
    ("names", read(cert=issue(sans=SANS[:2])), "names ['DNS:web-01', 'DNS:www.foobar.com'], want"),
    ("subject", read(cert=issue(sans=[SANS[1], SANS[0], SANS[2]])), "subject ['www.foobar.com'], want ['web-01']"),
    ("usages", read(cert=issue(usages=(ExtendedKeyUsageOID.CLIENT_AUTH,))), "extended key usages"),
    ("renewal due", read(cert=issue(days=20)), "within pki_cert_renew_days (30)"),
    ("extra content", read(extra="junk\n"), "nginx.pem holds more than its certificate"),
    ("no certificate", {"rc": 0, "stdout": "stat nginx.key 600 root root\nstat nginx.pem 644 root root\n"},
     "could not be read"),
])
def test_each_difference_is_a_reason_to_issue_again(case, result, reason):
    reasons = drift(result)
    assert any(reason in r for r in reasons), (case, reasons)


def test_an_rsa_key_is_not_what_the_role_makes():
    from cryptography.hazmat.primitives.asymmetric import rsa  # pylint: disable=import-outside-toplevel
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "the key is not ECC secp256r1" in drift(read(cert=issue(key=key), key=key))


def test_no_ca_yet_is_a_reason_and_bad_arguments_name_their_field():
    assert infra_pki_cert_drift(read(), "", "nginx", SANS, ["serverAuth"], 30) == ["no CA certificate on the controller yet"]
    with pytest.raises(AnsibleFilterError, match="pki_cert_sans: 'web-01' is not DNS"):
        drift(read(), sans=["web-01"])
    with pytest.raises(AnsibleFilterError, match="pki_cert_usage: 'codeSigning'"):
        drift(read(), usages=["codeSigning"])
    with pytest.raises(AnsibleFilterError, match="pki_cert_renew_days: 'soon'"):
        drift(read(), renew="soon")
    with pytest.raises(AnsibleFilterError, match=r"pki_dir/ca.pem\) cannot be read"):
        infra_pki_cert_drift(read(), "not a pem", "nginx", SANS, ["serverAuth"], 30)
    with pytest.raises(AnsibleFilterError, match="registered result"):
        drift("stdout")
