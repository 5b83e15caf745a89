"""filter_plugins/pki.py: whether a server's key and certificate are what the internal CA would issue."""

import datetime
import ipaddress

import pytest
from ansible.errors import AnsibleFilterError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pki import FilterModule, infra_pki_ca_drift, infra_pki_cert_drift

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


# The CA on the controller (infra_pki_ca_drift): what tasks/ca_make.yml makes, a passphrase-encrypted
# ECC secp384r1 key and a self-signed certificate naming the CA alone, critical CA:TRUE pathlen:0
# and critical keyCertSign, cRLSign.
PASSPHRASE, CA_NAME = "a passphrase", "infra-playbooks internal CA"
ROLE_CA_KEY = ec.generate_private_key(ec.SECP384R1())
MODES = "/inv/pki/ca.key 600\n/inv/pki/ca.pem 644\n"


def role_ca(key=ROLE_CA_KEY, name=CA_NAME, path_length=0, usage=None, critical=True, signer=None, issuer=None):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = usage or x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                   data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                   encipher_only=False, decipher_only=False)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject).public_key(key.public_key())
            .serial_number(7).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=critical)
            .add_extension(usage, critical=critical).sign(signer or key, hashes.SHA256()))


def encrypted(key, passphrase=PASSPHRASE):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.BestAvailableEncryption(passphrase.encode())).decode()


def ca_drift(cert=None, key=None, modes=MODES, passphrase=PASSPHRASE, name=CA_NAME):
    cert = pem(role_ca()) if cert is None else cert
    key = encrypted(ROLE_CA_KEY) if key is None else key
    return infra_pki_ca_drift(cert, key, passphrase, name, modes)


def test_the_ca_the_role_made_is_current():
    assert ca_drift() == []
    assert ca_drift(modes="") == []  # modes unknown: nothing said about them


@pytest.mark.parametrize("case, reason", [
    ("no key", "no CA key"),
    ("no certificate", "no CA certificate"),
    ("wrong passphrase", "cannot be read with pki_ca_passphrase"),
    ("key opened to 0644", "ca.key has mode 644, want 600"),
    ("certificate at 0600", "ca.pem has mode 600, want 644"),
    ("another curve", "not ECC secp384r1"),
    ("certificate of another key", "not of the CA key"),
    ("another name", "subject CN=someone else, want CN=infra-playbooks internal CA"),
    ("issued by another CA", "not self-signed"),
    ("any path length", "basic constraints are not critical CA:TRUE, pathlen:0"),
    ("extensions not critical", "key usage is not critical keyCertSign, cRLSign"),
    ("signs documents too", "key usage is not critical keyCertSign, cRLSign"),
    ("garbage certificate", "the CA certificate cannot be read"),
])
def test_each_difference_from_what_the_role_makes_is_named(case, reason):
    other = ec.generate_private_key(ec.SECP384R1())
    p256 = ec.generate_private_key(ec.SECP256R1())
    signing = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                            encipher_only=False, decipher_only=False)
    args = {
        "no key": {"key": ""},
        "no certificate": {"cert": ""},
        "wrong passphrase": {"passphrase": "not it"},
        "key opened to 0644": {"modes": MODES.replace(" 600", " 644")},
        "certificate at 0600": {"modes": MODES.replace(" 644", " 600")},
        "another curve": {"key": encrypted(p256), "cert": pem(role_ca(key=p256))},
        "certificate of another key": {"cert": pem(role_ca(key=other))},
        "another name": {"cert": pem(role_ca(name="someone else"))},
        "issued by another CA": {"cert": pem(role_ca(issuer=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])))},
        "any path length": {"cert": pem(role_ca(path_length=None))},
        "extensions not critical": {"cert": pem(role_ca(critical=False))},
        "signs documents too": {"cert": pem(role_ca(usage=signing))},
        "garbage certificate": {"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
    }[case]
    found = ca_drift(**args)
    assert any(reason in r for r in found), found


def test_a_certificate_signed_by_another_key_under_the_same_name_is_refused():
    forged = role_ca(signer=ec.generate_private_key(ec.SECP384R1()))
    assert ca_drift(cert=pem(forged)) == ["not signed by the CA key"]


@pytest.mark.parametrize("field, kwargs", [
    ("pki_ca_passphrase", {"passphrase": ""}),
    ("pki_ca_common_name", {"name": ""}),
    ("ca.pem", {"cert": 42}),
    ("modes", {"modes": ["ca.key 600"]}),
])
def test_bad_arguments_name_the_field(field, kwargs):
    with pytest.raises(AnsibleFilterError, match=field):
        ca_drift(**kwargs)


def test_the_ca_filter_is_registered():
    assert FilterModule().filters()["infra_pki_ca_drift"] is infra_pki_ca_drift


def test_a_read_through_an_emulated_terminal_has_no_drift_either():
    # A raw command under become, over a pty, answers through a terminal: lines end in \r\n.
    current = read()
    assert drift(dict(current, stdout=current["stdout"].replace("\n", "\r\n"))) == []
