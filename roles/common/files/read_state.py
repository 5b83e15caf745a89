"""The common role's one read of a server (tasks/read.yml): what its tasks would otherwise ask
in a call each. Arguments: the admin's user name, the minimum bits of sshd's moduli, and
whether to simulate apt's upgrade (1 or 0). Prints one JSON object:

- sources: Debian's sources files as `cat` prints them (the mirror in use is kept);
- simulated: `apt-get -s upgrade`'s output (the pending security updates), or null;
- admin: the account's passwd entry (home, gid, shell), its groups, whether its home exists;
- moduli_differ: whether dropping the short moduli would change /etc/ssh/moduli.
"""
import grp
import json
import os
import pwd
import subprocess
import sys

user, min_bits, simulate = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
out = {"sources": "", "simulated": None, "admin": {"exists": False}, "moduli_differ": False}
for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            out["sources"] += handle.read()
    except OSError:
        pass
if simulate:
    run = subprocess.run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade"], capture_output=True, text=True,
                         env=dict(os.environ, LC_ALL="C"))
    if run.returncode != 0:
        sys.exit(f"apt-get -s upgrade failed: {run.stderr.strip()[-500:]}")
    out["simulated"] = run.stdout
try:
    entry = pwd.getpwnam(user)
    groups = sorted({g.gr_name for g in grp.getgrall() if user in g.gr_mem} | {grp.getgrgid(entry.pw_gid).gr_name})
    out["admin"] = {"exists": True, "home": entry.pw_dir, "gid": entry.pw_gid, "shell": entry.pw_shell,
                    "groups": groups, "home_exists": os.path.isdir(entry.pw_dir)}
except KeyError:
    pass
if min_bits > 0 and os.path.exists("/etc/ssh/moduli"):
    # The same awk as the task that rewrites the file (tasks/ssh.yml), compared with it.
    differ = subprocess.run(["sh", "-c", f"awk '$5 >= {min_bits}' /etc/ssh/moduli | cmp -s - /etc/ssh/moduli"])
    out["moduli_differ"] = differ.returncode != 0
print(json.dumps(out))
