"""The internal CA's host certificates: whether the one on a server is still what the role issues.

Each filter is documented in its sidecar file, filter_plugins/<filter name>.yml (ansible-doc -t filter NAME).
"""

from __future__ import annotations

import datetime
import re

from ansible.errors import AnsibleFilterError
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

STAT = re.compile(r"^stat (\S+) ([0-7]{3,4}) (\S+) (\S+)$", re.M)
PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----", re.S)
USAGES = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}


def _sans(names):
    """``DNS:name`` / ``IP:address`` strings, as a set of x509 general names' text forms."""
    wanted = set()
    for name in names:
        kind, _, value = str(name).partition(":")
        if kind not in ("DNS", "IP") or not value:
            raise AnsibleFilterError(f"pki_cert_sans: {name!r} is not DNS:<name> or IP:<address>")
        wanted.add(f"{kind}:{value}")
    return wanted


def _usages(usages):
    try:
        return {USAGES[usage] for usage in usages}
    except KeyError as exc:
        raise AnsibleFilterError(f"pki_cert_usage: {exc.args[0]!r} is not one of {sorted(USAGES)}") from None


def infra_pki_cert_drift(read, ca_pem, name, sans, usages, renew_days, group="root", now=None):
    """What differs between a server's key and certificate and what the role would issue: a list
    of reasons, empty when the certificate is current (nothing to sign, nothing to install).

    ``read``: the registered result of the role's one read (``rc`` and ``stdout``: two lines
    ``stat <file> <mode> <owner> <group>`` for ``<name>.key`` and ``<name>.pem``, then the key's
    public key and the certificate, PEM). ``ca_pem``: the CA certificate. ``sans``:
    ``pki_cert_sans``; the first names the subject. ``usages``: ``pki_cert_usage``. ``renew_days``:
    ``pki_cert_renew_days``. ``group``: ``pki_cert_group`` (the key is 0640 for it, else 0600 and
    root's). ``now``: for tests. Raises AnsibleFilterError naming the field on bad arguments.
    """
    if not isinstance(read, dict):
        raise AnsibleFilterError("the read of the key and certificate must be a registered result (a dict)")
    wanted_sans, wanted_usages = _sans(sans or []), _usages(usages or [])
    if not wanted_sans:
        raise AnsibleFilterError("pki_cert_sans: at least one name")
    try:
        renew = datetime.timedelta(days=int(renew_days))
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"pki_cert_renew_days: {renew_days!r} is not a number of days") from None
    if not ca_pem:
        return ["no CA certificate on the controller yet"]
    try:
        ca = x509.load_pem_x509_certificate(str(ca_pem).encode())
    except ValueError as exc:
        raise AnsibleFilterError(f"the CA certificate (pki_dir/ca.pem) cannot be read: {exc}") from None
    if read.get("rc") != 0:
        return ["the key or the certificate is missing or unreadable"]
    # A read answered through a terminal (a raw command under become, over a pty) may end its lines in \r\n.
    text = str(read.get("stdout", "")).replace("\r\n", "\n")
    reasons = []
    stats = {path.rsplit("/", 1)[-1]: (mode.lstrip("0") or "0", owner, grp) for path, mode, owner, grp in STAT.findall(text)}
    key_wanted = ("640", "root", group) if group != "root" else ("600", "root", "root")
    if stats.get(f"{name}.key") != key_wanted:
        reasons.append(f"{name}.key: mode, owner, group {stats.get(f'{name}.key')}, want {key_wanted}")
    if stats.get(f"{name}.pem") != ("644", "root", "root"):
        reasons.append(f"{name}.pem: mode, owner, group {stats.get(f'{name}.pem')}, want ('644', 'root', 'root')")
    # The certificate file follows the public key: it must hold that one certificate, nothing else.
    head, _, cert_file = text.partition("-----END PUBLIC KEY-----")
    keys = [m.group(0) for m in PEM.finditer(head + "-----END PUBLIC KEY-----") if m.group(1) == "PUBLIC KEY"]
    certs = [m.group(0) for m in PEM.finditer(cert_file)]
    if len(keys) != 1 or len(certs) != 1 or not certs[0].startswith("-----BEGIN CERTIFICATE-----"):
        return reasons + ["the key's public half or the certificate could not be read"]
    if cert_file.strip() != certs[0]:
        reasons.append(f"{name}.pem holds more than its certificate")
    try:
        public = serialization.load_pem_public_key(keys[0].encode())
        cert = x509.load_pem_x509_certificate(certs[0].encode())
    except ValueError as exc:
        return reasons + [f"unreadable: {exc}"]
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        reasons.append("the key is not ECC secp256r1")
    if cert.public_key() != public:
        reasons.append("the certificate is not the key's")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        reasons.append("the certificate is not signed by the internal CA")
    subject = [attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    first = str(sans[0]).partition(":")[2]
    if subject != [first]:
        reasons.append(f"subject {subject}, want [{first!r}]")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have_sans = {f"DNS:{n}" for n in names.get_values_for_type(x509.DNSName)} | {
            f"IP:{n}" for n in names.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        have_sans = set()
    if have_sans != wanted_sans:
        reasons.append(f"names {sorted(have_sans)}, want {sorted(wanted_sans)}")
    try:
        have_usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        have_usages = set()
    if have_usages != wanted_usages:
        reasons.append(f"extended key usages {sorted(u.dotted_string for u in have_usages)}, want {sorted(usages)}")
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc - now < renew:
        reasons.append(f"expires {cert.not_valid_after_utc:%Y-%m-%d}, within pki_cert_renew_days ({renew.days})")
    return reasons


def infra_pki_ca_drift(ca_pem, ca_key, passphrase, common_name, modes=""):
    """What differs between the CA on the controller and the one the role makes (tasks/ca.yml):
    a list of reasons, empty when the CA's three modules have nothing to do.

    ``ca_pem``, ``ca_key``: the contents of ``ca.pem`` and ``ca.key`` ('' when missing).
    ``passphrase``: ``pki_ca_passphrase``, which must open the key. ``common_name``:
    ``pki_ca_common_name``. ``modes``: ``stat -c '%n %a'`` of both files, one per line (the key is
    0600, the certificate 0644). The certificate must be self-signed by that key (an ECC secp384r1
    key), name ``common_name`` alone, and be a CA for one level (basic constraints CA:TRUE,
    pathlen:0) that signs certificates and CRLs only, both extensions critical: what the role's
    request asks for. Its dates are not checked, as the module does not (``ignore_timestamps``).
    Raises AnsibleFilterError naming the field on bad arguments.
    """
    for field, value in (("ca.pem", ca_pem), ("ca.key", ca_key), ("pki_ca_passphrase", passphrase),
                         ("pki_ca_common_name", common_name), ("modes", modes)):
        if value is not None and not isinstance(value, str):
            raise AnsibleFilterError(f"{field}: expected a string, got {type(value).__name__}")
    if not passphrase:
        raise AnsibleFilterError("pki_ca_passphrase: empty")
    if not common_name:
        raise AnsibleFilterError("pki_ca_common_name: empty")
    reasons = []
    found_modes = dict(line.rsplit(" ", 1) for line in (modes or "").splitlines() if " " in line)
    for name, mode in (("ca.key", "600"), ("ca.pem", "644")):
        have = next((m for path, m in found_modes.items() if path.endswith("/" + name) or path == name), None)
        if have is not None and have != mode:
            reasons.append(f"{name} has mode {have}, want {mode}")
    if not ca_key:
        return reasons + ["no CA key"]
    try:
        key = serialization.load_pem_private_key(ca_key.encode(), password=passphrase.encode())
    except (ValueError, TypeError):
        return reasons + ["the CA key cannot be read with pki_ca_passphrase"]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        reasons.append("the CA key is not ECC secp384r1")
    if not ca_pem:
        return reasons + ["no CA certificate"]
    try:
        cert = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        return reasons + ["the CA certificate cannot be read"]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.PEM, public) != \
            key.public_key().public_bytes(serialization.Encoding.PEM, public):
        return reasons + ["the CA certificate is not of the CA key"]
    names = [(a.oid, a.value) for a in cert.subject]
    if names != [(NameOID.COMMON_NAME, common_name)]:
        reasons.append(f"subject {cert.subject.rfc4514_string()}, want CN={common_name}")
    if cert.issuer != cert.subject:
        reasons.append("not self-signed")
    else:
        try:
            key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        except InvalidSignature:
            reasons.append("not signed by the CA key")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        if not (constraints.critical and constraints.value.ca and constraints.value.path_length == 0):
            reasons.append("basic constraints are not critical CA:TRUE, pathlen:0")
    except x509.ExtensionNotFound:
        reasons.append("no basic constraints")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        value = usage.value
        others = (value.digital_signature, value.content_commitment, value.key_encipherment,
                  value.data_encipherment, value.key_agreement)
        if not (usage.critical and value.key_cert_sign and value.crl_sign and not any(others)):
            reasons.append("key usage is not critical keyCertSign, cRLSign")
    except x509.ExtensionNotFound:
        reasons.append("no key usage")
    return reasons


class FilterModule:  # pylint: disable=too-few-public-methods
    """Ansible filters of the internal CA."""

    def filters(self):
        return {"infra_pki_cert_drift": infra_pki_cert_drift, "infra_pki_ca_drift": infra_pki_ca_drift}
