#!/usr/bin/env python3
"""Keep every root the lab's ACME CA (pebble) has had, in one CA bundle.

Pebble makes a new root at every start, and the site's certificate chains to the root of the
pebble that issued it, so a prober that trusts only today's root fails on yesterday's
certificate. lab/support.yml runs this from a timer on the monitoring hosts; the blackbox
exporter's site probe trusts the bundle (prometheus_blackbox_site_ca_file). Pebble's
management port is verified against the internal CA, which signed its certificate.

    lab/acme_roots.py --url https://acme:15000/roots/0 --ca /etc/ssl/infra/ca.pem --out roots.pem
"""

import argparse
import os
import re
import ssl
import sys
import tempfile
import urllib.request

PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


def certificates(text):
    """The PEM certificates in a text, each normalised (one per block, newline-terminated)."""
    return ["\n".join(line.strip() for line in block.strip().splitlines() if line.strip()) + "\n"
            for block in PEM.findall(text)]


def merge(bundle, fetched, keep=20):
    """The bundle with the fetched certificates added (none twice), newest last, at most `keep`.
    ValueError if `fetched` holds no certificate."""
    new = certificates(fetched)
    if not new:
        raise ValueError("the CA answered no PEM certificate")
    merged = [c for c in certificates(bundle) if c not in new] + new
    return "".join(merged[-keep:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True, help="CA that verifies the ACME CA's management port")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        with urllib.request.urlopen(args.url, timeout=10, context=ssl.create_default_context(cafile=args.ca)) as answer:
            fetched = answer.read().decode()
        old = open(args.out, encoding="utf-8").read() if os.path.exists(args.out) else ""
        new = merge(old, fetched)
    except (OSError, ValueError) as exc:
        print(f"acme_roots: {args.url}: {exc}", file=sys.stderr)
        return 1
    if new != old:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.out)))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(new)
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
