"""The common role's one read of a server (tasks/read.yml): what its tasks would otherwise ask
in a call each. Arguments: the admin's user name, the minimum bits of sshd's moduli, and
whether to simulate apt's upgrade (1 or 0), and whether the simulation may be kept for the next
run (1 or 0: not in check mode). Prints one JSON object:

- sources: Debian's sources files as `cat` prints them (the mirror in use is kept);
- simulated: `apt-get -s upgrade`'s output (the pending security updates), or null. It depends
  only on apt's inputs (dpkg's status, the package lists, apt's configuration and pins): it is
  kept in CACHE with a digest of their paths, sizes and modification times, and simulated again
  only when one of them changed (a package installed or removed, the lists refreshed, a pin);
- admin: the account's passwd entry (home, gid, shell), its groups, whether its home exists;
- moduli_differ: whether dropping the short moduli would change /etc/ssh/moduli;
- controller_address: the address the controller connects from, as this server sees it (the
  first field of SSH_CLIENT), or "" without SSH. The read runs under sudo, which resets the
  environment: it is taken from the first process up this one's chain that has it (the SSH
  session's shell, or sudo itself). The firewall role always allows SSH from it (site.yml
  passes it on, which spares the firewall its own `printenv SSH_CLIENT`).

With the arguments `--simulate KEEP` it prints `{"simulated": ...}` alone: the role asks again
after a run changed apt's inputs (tasks/upgrades.yml), and that run keeps the simulation for
the next one, whose first read then finds it.
"""
import grp
import hashlib
import json
import os
import pwd
import subprocess
import sys

CACHE = "/var/cache/infra-playbooks/apt-upgrade-simulation.json"
# Everything `apt-get -s upgrade` reads: dpkg's database, apt's own state, the lists, the configuration.
APT_INPUTS = ("/var/lib/dpkg/status", "/var/lib/dpkg/arch", "/var/lib/apt/extended_states", "/var/lib/apt/lists",
              "/etc/apt")


def apt_inputs_digest():
    """A digest of the path, size and modification time of every file apt's simulation reads."""
    seen = []
    for top in APT_INPUTS:
        walk = os.walk(top) if os.path.isdir(top) else [(os.path.dirname(top), [], [os.path.basename(top)])]
        for folder, dirs, files in walk:
            dirs[:] = sorted(d for d in dirs if d != "partial")
            for name in sorted(files):
                path = os.path.join(folder, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                seen.append(f"{path} {info.st_size} {info.st_mtime_ns}")
    return hashlib.sha256("\n".join(seen).encode()).hexdigest()


def simulate_upgrade(keep):
    """apt-get -s upgrade's output, from CACHE when apt's inputs have not changed since it was kept."""
    digest = apt_inputs_digest()
    try:
        with open(CACHE, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("inputs") == digest:
            return cached["output"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    run = subprocess.run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "upgrade"], capture_output=True, text=True,
                         env=dict(os.environ, LC_ALL="C"))
    if run.returncode != 0:
        sys.exit(f"apt-get -s upgrade failed: {run.stderr.strip()[-500:]}")
    if keep:
        os.makedirs(os.path.dirname(CACHE), mode=0o700, exist_ok=True)
        with open(CACHE + ".new", "w", encoding="utf-8") as handle:
            json.dump({"inputs": digest, "output": run.stdout}, handle)
        os.replace(CACHE + ".new", CACHE)
    return run.stdout


def controller_address(pid=None, proc="/proc"):
    """The first field of SSH_CLIENT in the environment of the first process, from `pid` (this
    one) up to init, whose environment has it; "" if none has or one cannot be read."""
    pid = os.getpid() if pid is None else pid
    while pid > 1:
        try:
            with open(f"{proc}/{pid}/environ", "rb") as handle:
                for item in handle.read().split(b"\0"):
                    if item.startswith(b"SSH_CLIENT="):
                        return item[len(b"SSH_CLIENT="):].decode(errors="replace").split(" ")[0]
            with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as handle:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return ""
    return ""


def main(argv):
    """Print the read's JSON object for these arguments (see the module's docstring)."""
    if argv[1] == "--simulate":
        print(json.dumps({"simulated": simulate_upgrade(len(argv) > 2 and argv[2] == "1")}))
        return
    user, min_bits, simulate = argv[1], int(argv[2]), argv[3] == "1"
    keep = len(argv) > 4 and argv[4] == "1"
    out = {"sources": "", "simulated": None, "admin": {"exists": False}, "moduli_differ": False,
           "controller_address": controller_address()}
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                out["sources"] += handle.read()
        except OSError:
            pass
    if simulate:
        out["simulated"] = simulate_upgrade(keep)
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


if __name__ == "__main__":
    main(sys.argv)
