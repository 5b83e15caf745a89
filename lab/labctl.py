#!/usr/bin/env python3
"""Local lab of Debian hosts in Docker, reached over SSH like real servers.

One tool serves `make lab` and molecule's create and destroy playbooks, and both read the
hosts from inventory/lab, so both start the same hosts the same way; a scenario moves them
to a subnet of its own (each host keeps its place in the subnet):

    labctl.py engine                      make sure a Docker engine answers (install/start it)
    labctl.py images                      build the Debian base images offline-from-registries
    labctl.py up --inventory inventory/lab
    labctl.py up --prefix mol --subnet 172.30.20.0/24 --inventory inventory/lab --no-publish \
        --hosts-out hosts.json            (the hosts started, with their addresses, as JSON)
    labctl.py info --inventory inventory/lab
    labctl.py down [--prefix lab]         remove containers, network and key of one lab

Only the standard library is used. Every failure ends with one line `lab: ...` that says
what failed and what to do, and exit status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".lab"

# Everything that shapes an image is part of its tag: change any of it and the image is rebuilt.
RECIPE_VERSION = "3"
BASE_PACKAGES = [
    "python3", "python3-apt", "systemd", "systemd-sysv", "dbus", "openssh-server",
    "sudo", "procps", "iproute2", "ca-certificates",
]
IMAGES = {"debian12": "bookworm", "debian13": "trixie"}

# A one-shot unit that gives each container its own SSH host keys at first boot:
# keys generated inside debootstrap would be shared by every container of an image.
HOSTKEYS_UNIT = """\
[Unit]
Description=Generate SSH host keys unique to this host
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
RequiredBy=ssh.service
"""

# Units that cannot work in a container and only make `systemctl is-system-running` degraded.
MASKED_UNITS = [
    "getty@tty1.service", "console-getty.service", "systemd-remount-fs.service",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "systemd-firstboot.service", "systemd-udevd.service", "systemd-modules-load.service",
]

# The container options systemd needs as PID 1 (--privileged does not work on this kind of host).
RUN_OPTIONS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
    "--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined",
    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3",
]

DEFAULT_ADMIN = "ops"
LABEL = "infra-lab"


class LabError(Exception):
    """A failure the user can act on; its text is printed as one line."""


def log(msg: str) -> None:
    """Print one progress line, prefixed `lab:`."""
    print(f"lab: {msg}", flush=True)


def run(cmd, *, check=True, capture=True, input_text=None, timeout=None):
    """Run a command; return CompletedProcess. Raise LabError on failure when check."""
    try:
        proc = subprocess.run(
            cmd, text=True, input=input_text, timeout=timeout,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} is not installed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"'{' '.join(cmd[:3])} ...' did not finish within {timeout}s") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        detail = err[-1] if err else f"exit status {proc.returncode}"
        raise LabError(f"'{' '.join(cmd[:3])} ...' failed: {detail}")
    return proc


def container_name(prefix: str, host: str) -> str:
    """The Docker container of an inventory host in the lab ``prefix`` (``lab``, ``mol``, ``bench``...).

    The one place that names containers: labctl itself, lab/bench.py and the molecule tests
    (molecule/default/tests/conftest.py) all call it.
    """
    return f"{prefix}-{host}"


def as_root(cmd):
    """Prefix sudo when not running as root."""
    return cmd if os.geteuid() == 0 else ["sudo", "-n", *cmd]


# --------------------------------------------------------------------------- Docker engine

def docker_ok() -> bool:
    """Whether a Docker engine answers `docker info`."""
    try:
        return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def ensure_engine(logfile: Path | None = None, wait: int = 60) -> None:
    """Make sure a Docker engine answers: install Debian's docker.io and start it if needed."""
    if docker_ok():
        return
    if not shutil.which("dockerd"):
        log("installing the Docker engine (Debian package docker.io)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "docker.io"]):
            proc = subprocess.run(as_root(cmd), env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                tail = proc.stdout.strip().splitlines()[-1:] or ["?"]
                raise LabError(f"could not install docker.io with apt-get ({tail[0]}); "
                               "install the Docker engine by hand and run again")
    if not shutil.which("docker"):
        raise LabError("the docker client is missing; install Debian's docker.io and run again")
    if logfile is None:
        logfile = Path("/var/log/infra-lab-dockerd.log") if os.geteuid() == 0 else STATE / "dockerd.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    if Path("/run/systemd/system").is_dir():
        subprocess.run(as_root(["systemctl", "start", "docker"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if not docker_ok():
        log(f"starting dockerd in the background (log: {logfile})")
        with open(logfile, "ab") as out:
            daemon = subprocess.Popen(as_root(["dockerd"]), stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        for _ in range(wait):
            if docker_ok() or daemon.poll() is not None:
                break
            time.sleep(1)
    if not docker_ok():
        lines = [ln for ln in logfile.read_text(errors="replace").splitlines() if ln.strip()]
        tail = f": {lines[-1][-200:]}" if lines else ""
        raise LabError(f"the Docker engine could not start (see {logfile}{tail}); "
                       "start dockerd yourself, or run the lab on a machine that can run it")


# --------------------------------------------------------------------------- images

def recipe_hash(name: str) -> str:
    """A short hash of everything that shapes an image: its tag."""
    recipe = json.dumps({
        "version": RECIPE_VERSION, "suite": IMAGES[name], "packages": BASE_PACKAGES,
        "hostkeys": HOSTKEYS_UNIT, "masked": MASKED_UNITS,
    }, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def image_ref(name: str) -> str:
    """The tagged reference of a lab image; an unknown image is a LabError."""
    if name not in IMAGES:
        raise LabError(f"unknown lab image '{name}' (lab_image must be one of {sorted(IMAGES)})")
    return f"infra-lab/{name}:{recipe_hash(name)}"


def image_exists(ref: str) -> bool:
    """Whether the engine has this image."""
    return run(["docker", "image", "inspect", ref], check=False).returncode == 0


def customise_rootfs(root: Path) -> None:
    """Adjust a debootstrapped tree for life as a systemd container reached over SSH."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    units = root / "etc/systemd/system"
    (units / "ssh-hostkeys.service").write_text(HOSTKEYS_UNIT)
    wants = units / "ssh.service.requires"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "ssh-hostkeys.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/ssh-hostkeys.service")
    for unit in MASKED_UNITS:
        target = units / unit
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to("/dev/null")
    # An empty machine-id: systemd gives every container its own at boot.
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_symlink() or dbus_id.exists():
        dbus_id.unlink()
    for path in (root / "etc/hostname",):
        if path.exists():
            path.unlink()
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def build_image(name: str) -> str:
    """Build a base image with debootstrap and docker import, unless its tag exists; its reference."""
    ref = image_ref(name)
    if image_exists(ref):
        log(f"image {ref} is up to date")
        return ref
    if not shutil.which("debootstrap"):
        run(as_root(["apt-get", "install", "-y", "-qq", "debootstrap"]), check=False)
        if not shutil.which("debootstrap"):
            raise LabError("debootstrap is not installed; run 'apt-get install debootstrap'")
    suite = IMAGES[name]
    mirror = os.environ.get("LAB_MIRROR")  # unset: debootstrap's own default Debian mirror
    log(f"building {ref} from Debian {suite} with debootstrap (about a minute)")
    workdir = Path(tempfile.mkdtemp(prefix=f"infra-lab-{name}-", dir="/var/tmp"))
    rootfs = workdir / "rootfs"
    logfile = workdir / "debootstrap.log"
    try:
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
               suite, str(rootfs)] + ([mirror] if mirror else [])
        with open(logfile, "w") as out:
            proc = subprocess.run(as_root(cmd), stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            text = logfile.read_text(errors="replace")
            where = mirror or "debootstrap's default Debian mirror"
            if re.search(r"Failed getting release file|Couldn't download|Temporary failure|"
                         r"Could not resolve|Connection (refused|timed out)", text):
                raise LabError(f"debootstrap could not reach the Debian archive ({where}); "
                               "check the network or proxy, or set LAB_MIRROR to a reachable mirror")
            last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["?"]
            raise LabError(f"debootstrap of {suite} failed ({last[0]}); full log kept in {logfile}")
        customise_rootfs(rootfs)
        tar = subprocess.Popen(as_root(["tar", "-C", str(rootfs), "-c", "."]), stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["docker", "import", "-c", 'CMD ["/lib/systemd/systemd"]', "-c", "ENV container=docker",
             "-c", f"LABEL {LABEL}.recipe={recipe_hash(name)}",
             "-", ref], stdin=tar.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tar.stdout.close()
        tar.wait()
        if tar.returncode != 0 or imp.returncode != 0:
            raise LabError(f"docker import of {ref} failed: {imp.stderr.strip()[-200:]}")
    except LabError:
        if logfile.exists():
            keep = Path(tempfile.mkdtemp(prefix="infra-lab-log-", dir="/var/tmp")) / "debootstrap.log"
            shutil.copy(logfile, keep)
        raise
    finally:
        subprocess.run(as_root(["rm", "-rf", "--one-file-system", str(workdir)]), check=False)
    log(f"built {ref}")
    return ref


# --------------------------------------------------------------------------- hosts

def load_inventory_hosts(inventory: str) -> tuple[list[dict], str]:
    """Read lab hosts (those with lab_image) and lab_subnet from an Ansible inventory."""
    sibling = Path(sys.executable).parent / "ansible-inventory"
    exe = shutil.which("ansible-inventory") or (str(sibling) if sibling.exists() else None)
    if not exe:
        raise LabError("ansible-inventory is not on PATH; run 'make venv' first")
    proc = run([exe, "-i", inventory, "--list"], timeout=120)
    data = json.loads(proc.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    hosts, subnets = [], set()
    for name in sorted(hostvars):
        hv = hostvars[name]
        if "lab_image" not in hv:
            continue
        hosts.append({
            "name": name, "image": hv["lab_image"], "address": hv.get("ansible_host"),
            "aliases": hv.get("lab_aliases", []), "publish": hv.get("lab_publish", []),
            "extra_hosts": site_entries(hv.get("lab_site"), name),
        })
        if "lab_subnet" in hv:
            subnets.add(hv["lab_subnet"])
    if not hosts:
        raise LabError(f"inventory {inventory} has no host with lab_image set")
    if len(subnets) != 1:
        raise LabError(f"inventory {inventory} must set exactly one lab_subnet (found {sorted(subnets)})")
    return hosts, subnets.pop()


def site_entries(site, host: str) -> list[list[str]]:
    """The /etc/hosts entries [name, address] of lab_site ({address, names}): the site's names
    at the address that floats between the load balancers. None gives none."""
    if site is None:
        return []
    if not isinstance(site, dict) or not isinstance(site.get("names"), list) or not site.get("names"):
        raise LabError(f"lab host '{host}': lab_site must be a mapping with an address and a list of names")
    for name in site["names"]:
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", name):
            raise LabError(f"lab host '{host}': lab_site.names: {name!r} is not a DNS name")
    return [[name, str(site.get("address"))] for name in site["names"]]


def rebase_hosts(hosts: list[dict], subnet: str, new_subnet: str) -> list[dict]:
    """The hosts moved from subnet to new_subnet, each at the same offset (x.x.10.11 -> y.y.20.11)."""
    try:
        old, new = ipaddress.ip_network(subnet), ipaddress.ip_network(new_subnet)
    except ValueError as exc:
        raise LabError(f"subnet: {exc}") from None
    if old.prefixlen != new.prefixlen:
        raise LabError(f"--subnet {new_subnet} must be as large as the inventory's lab_subnet {subnet}")
    moved = []
    for host in hosts:
        try:
            offset = int(ipaddress.ip_address(host["address"])) - int(old.network_address)
        except (TypeError, ValueError):
            raise LabError(f"host {host.get('name')}: address {host.get('address')!r} is not an IP address") from None
        moved.append(dict(host, address=str(new.network_address + offset),
                          extra_hosts=[[name, _moved(address, old, new)] for name, address in host.get("extra_hosts", [])]))
    return moved


def _moved(address: str, old, new) -> str:
    """An address of the old subnet at the same offset in the new one (others unchanged)."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return address  # validate_hosts names it
    return str(new.network_address + (int(addr) - int(old.network_address))) if addr in old else address


def validate_hosts(hosts: list[dict], subnet: str) -> None:
    """Check names, images, and that addresses are unique and inside the subnet."""
    try:
        net = ipaddress.ip_network(subnet)
    except ValueError as exc:
        raise LabError(f"lab_subnet '{subnet}' is not a valid network: {exc}") from exc
    seen_names, seen_addr = set(), set()
    for host in hosts:
        name = host.get("name")
        if not name or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise LabError(f"lab host name '{name}' must be lower-case letters, digits and dashes")
        if name in seen_names:
            raise LabError(f"lab host '{name}' is listed twice")
        seen_names.add(name)
        image_ref(host.get("image", ""))
        try:
            addr = ipaddress.ip_address(host.get("address") or "")
        except ValueError as exc:
            raise LabError(f"lab host '{name}': ansible_host '{host.get('address')}' is not an IP address") from exc
        if addr not in net or addr in (net.network_address, net.broadcast_address, next(net.hosts())):
            raise LabError(f"lab host '{name}': address {addr} is not a usable host address of {net} "
                           f"(the first one, {next(net.hosts())}, is the gateway)")
        if addr in seen_addr:
            raise LabError(f"lab host '{name}': address {addr} is used twice")
        seen_addr.add(addr)
    for host in hosts:
        for name, address in host.get("extra_hosts", []):
            try:
                addr = ipaddress.ip_address(address)
            except ValueError:
                raise LabError(f"lab_site.address '{address}' (for {name}) is not an IP address") from None
            if addr not in net or addr in (net.network_address, net.broadcast_address, next(net.hosts())):
                raise LabError(f"lab_site.address {addr} is not a usable host address of {net}")
            if addr in seen_addr:
                raise LabError(f"lab_site.address {addr} is a lab host's address: the site's floats between hosts")


def ensure_key(prefix: str) -> Path:
    """The lab's SSH key pair under .lab/<prefix>/ssh/, made if missing; the private key's path."""
    keydir = STATE / prefix / "ssh"
    key = keydir / "id_ed25519"
    if not key.exists():
        keydir.mkdir(parents=True, exist_ok=True)
        os.chmod(keydir, 0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"infra-lab-{prefix}", "-f", str(key)])
        log(f"generated the lab SSH key {key}")
    return key


def ensure_network(prefix: str, subnet: str) -> str:
    """The lab's Docker network on its subnet, made if missing; its name."""
    name = f"{prefix}-net"
    proc = run(["docker", "network", "inspect", name, "--format",
                "{{range .IPAM.Config}}{{.Subnet}}{{end}}"], check=False)
    if proc.returncode == 0:
        have = proc.stdout.strip()
        if have != subnet:
            raise LabError(f"docker network {name} exists with subnet {have}, not {subnet}; "
                           f"run 'labctl.py down --prefix {prefix}' first")
        return name
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    proc = run(["docker", "network", "create", "--subnet", subnet, "--gateway", gateway,
                "--label", f"{LABEL}={prefix}", name], check=False)
    if proc.returncode != 0:
        raise LabError(f"could not create docker network {name} on {subnet} "
                       f"({proc.stderr.strip()}); free that subnet or change lab_subnet")
    return name


def container_state(cname: str) -> dict | None:
    """`docker inspect` of a container, or None when there is none."""
    proc = run(["docker", "inspect", cname], check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


def start_host(prefix: str, network: str, host: dict, all_hosts: list[dict], publish: bool) -> bool:
    """Start (or reuse) one host's container. Return True when it was created anew."""
    cname = container_name(prefix, host["name"])
    ref = image_ref(host["image"])
    state = container_state(cname)
    if state is not None:
        if state["Config"]["Image"] != ref:
            log(f"{cname} runs {state['Config']['Image']}, the recipe now builds {ref}; "
                f"keeping it (run 'make lab-down' to start afresh)")
        if not state["State"]["Running"]:
            run(["docker", "start", cname])
            log(f"started {cname}")
        return False
    cmd = ["docker", "run", "-d", "--name", cname, "--hostname", host["name"],
           "--network", network, "--ip", host["address"], "--label", f"{LABEL}={prefix}",
           "--network-alias", host["name"], *RUN_OPTIONS]
    for alias in host.get("aliases", []):
        cmd += ["--network-alias", alias]
    for other in all_hosts:
        if other["name"] != host["name"]:
            cmd += ["--add-host", f"{other['name']}:{other['address']}"]
    for name, address in host.get("extra_hosts", []):
        cmd += ["--add-host", f"{name}:{address}"]
    if publish:
        for port in host.get("publish", []):
            cmd += ["-p", f"127.0.0.1:{int(port)}:{int(port)}"]
    cmd.append(ref)
    run(cmd)
    log(f"created {cname} ({host['image']}, {host['address']})")
    return True


def wait_for_systemd(cname: str, timeout: int = 90) -> None:
    """Wait until systemd in a container is running (or degraded)."""
    deadline = time.time() + timeout
    state = ""
    while time.time() < deadline:
        proc = run(["docker", "exec", cname, "systemctl", "is-system-running"], check=False)
        state = proc.stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise LabError(f"systemd in {cname} did not finish booting within {timeout}s (state '{state}'); "
                   f"see 'docker logs {cname}'")


BOOTSTRAP = r"""
set -eu
user="$1"; key="$2"
if ! id -u "$user" >/dev/null 2>&1; then useradd --create-home --shell /bin/bash --groups sudo "$user"; fi
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
if ! grep -qxF "$key" "$home/.ssh/authorized_keys" 2>/dev/null; then
  printf '%s\n' "$key" >> "$home/.ssh/authorized_keys"
fi
chown "$user:$user" "$home/.ssh/authorized_keys"; chmod 0600 "$home/.ssh/authorized_keys"
# Only the first time: afterwards the playbook's common role owns this file.
if [ ! -e "/etc/sudoers.d/50-$user" ]; then
  printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$user" > "/etc/sudoers.d/50-$user"
  chmod 0440 "/etc/sudoers.d/50-$user"
fi
systemctl is-active --quiet ssh || systemctl start ssh
"""


def bootstrap_host(cname: str, user: str, pubkey: str) -> None:
    """What cloud-init does on a real server: an admin user with the key, and sudo."""
    run(["docker", "exec", "-i", cname, "sh", "-s", "--", user, pubkey], input_text=BOOTSTRAP)


def wait_for_ssh(prefix: str, host: dict, user: str, key: Path, timeout: int = 60) -> None:
    """Wait until a host accepts the admin user's key over SSH and sudo works."""
    known = key.parent / "known_hosts"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection((host["address"], 22), timeout=2):
                pass
        except OSError:
            time.sleep(1)
            continue
        proc = run(["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                    "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=accept-new",
                    f"{user}@{host['address']}", "sudo", "-n", "true"], check=False)
        if proc.returncode == 0:
            return
        time.sleep(1)
    raise LabError(f"{container_name(prefix, host['name'])} does not accept SSH as {user} within {timeout}s")


def write_ssh_config(prefix: str, hosts: list[dict], user: str, key: Path) -> Path:
    """An ssh_config naming every lab host, beside the key; its path."""
    cfg = key.parent / "config"
    lines = []
    for host in hosts:
        lines += [f"Host {host['name']}", f"  HostName {host['address']}", f"  User {user}",
                  f"  IdentityFile {key}", "  IdentitiesOnly yes",
                  f"  UserKnownHostsFile {key.parent / 'known_hosts'}",
                  "  StrictHostKeyChecking accept-new", ""]
    cfg.write_text("\n".join(lines))
    return cfg


def write_connection_vars(path: Path, key: Path) -> Path:
    """An inventory source beside the lab's hosts: how Ansible reaches them, as plain values.

    The key's path is this checkout's, known only here. Written as a template in the inventory's
    group_vars, it was rendered again for every task on every host (a Jinja compile in each
    forked worker, about 5 ms of the controller's CPU per task and host: docs/benchmarks.md);
    plain values cost nothing. Group ``all``'s inventory variables, the lowest of an inventory's.
    """
    known = key.parent / "known_hosts"
    path.write_text(
        "# Written by `lab/labctl.py up --connection-vars` (make lab-up) for this checkout's lab, and\n"
        "# removed by `make lab-down`; git-ignored. How Ansible reaches the lab's hosts: its SSH key\n"
        "# and known hosts under .lab/ (absolute paths, no template to render for every task).\n"
        # JSON strings are YAML's double-quoted scalars: any path is quoted right.
        "all:\n  vars:\n"
        f"    ansible_ssh_private_key_file: {json.dumps(str(key))}\n"
        f"    ansible_ssh_common_args: {json.dumps(f'-o UserKnownHostsFile={known} -o StrictHostKeyChecking=accept-new -o IdentitiesOnly=yes')}\n")
    return path


def cmd_up(args) -> None:
    """`labctl.py up`: engine, images, network, containers, admin user; then wait for SSH."""
    ensure_engine()
    if args.hosts_json:
        hosts = json.loads(Path(args.hosts_json).read_text())
        subnet = args.subnet
        if not subnet:
            raise LabError("--subnet is required with --hosts-json")
    else:
        hosts, subnet = load_inventory_hosts(args.inventory)
        validate_hosts(hosts, subnet)
        if args.subnet:
            hosts, subnet = rebase_hosts(hosts, subnet, args.subnet), args.subnet
    validate_hosts(hosts, subnet)
    for name in sorted({h["image"] for h in hosts}):
        build_image(name)
    key = ensure_key(args.prefix)
    pubkey = key.with_suffix(".pub").read_text().strip()
    network = ensure_network(args.prefix, subnet)
    known = key.parent / "known_hosts"
    for host in hosts:
        if start_host(args.prefix, network, host, hosts, publish=not args.no_publish) and known.exists():
            run(["ssh-keygen", "-R", host["address"], "-f", str(known)], check=False)
    for host in hosts:
        cname = container_name(args.prefix, host["name"])
        wait_for_systemd(cname)
        bootstrap_host(cname, args.user, pubkey)
    for host in hosts:
        wait_for_ssh(args.prefix, host, args.user, key)
    write_ssh_config(args.prefix, hosts, args.user, key)
    if args.connection_vars:
        write_connection_vars(Path(args.connection_vars), key)
    if args.hosts_out:
        Path(args.hosts_out).write_text(json.dumps(hosts, indent=2) + "\n")
    log(f"{len(hosts)} hosts up on {network} ({subnet}), reachable over SSH as {args.user}")


def cmd_down(args) -> None:
    """`labctl.py down`: remove one lab's containers, network and key."""
    if not docker_ok():
        log("no Docker engine answers: no container to remove")
    else:
        proc = run(["docker", "ps", "-aq", "--filter", f"label={LABEL}={args.prefix}"])
        ids = proc.stdout.split()
        if ids:
            run(["docker", "rm", "-f", "-v", *ids])
        proc = run(["docker", "network", "ls", "-q", "--filter", f"label={LABEL}={args.prefix}"])
        nets = proc.stdout.split()
        if nets:
            run(["docker", "network", "rm", *nets])
        log(f"removed {len(ids)} containers and {len(nets)} networks of lab '{args.prefix}'")
    keydir = STATE / args.prefix
    if keydir.exists():
        shutil.rmtree(keydir)
        log(f"removed {keydir}")
    if args.connection_vars and Path(args.connection_vars).exists():
        Path(args.connection_vars).unlink()
        log(f"removed {args.connection_vars}")


def cmd_info(args) -> None:
    """`labctl.py info`: how to reach the site and each host."""
    hosts, _ = load_inventory_hosts(args.inventory)
    cfg = STATE / args.prefix / "ssh" / "config"
    rel = os.path.relpath(cfg, Path.cwd())
    print("\nThe lab is up.")
    for name, address in (hosts[0].get("extra_hosts") or [])[:1]:
        print(f"  site:   https://{name}/ at {address}, the load balancers' floating address (from this machine: "
              f"curl --resolve {name}:443:{address} https://{name}/)")
    for lb in [h for h in hosts if 443 in h.get("publish", [])]:
        print(f"  {lb['name']} publishes 80/443 on 127.0.0.1 of this machine")
    for host in hosts:
        print(f"  {host['name']:<8} {host['address']:<15} ssh -F {rel} {host['name']}"
              f"   |   docker exec -it {container_name(args.prefix, host['name'])} bash")
    print(f"  rerun:  ansible-playbook -i {args.inventory} site.yml\n  remove: make lab-down\n")


def main(argv=None) -> int:
    """The command line; exit status 1 with one line `lab: ...` on a LabError."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("engine", help="make sure a Docker engine answers")
    p_img = sub.add_parser("images", help="build the base images")
    p_img.add_argument("names", nargs="*", default=sorted(IMAGES))
    p_up = sub.add_parser("up", help="start the lab hosts")
    p_up.add_argument("--prefix", default="lab")
    p_up.add_argument("--inventory", default="inventory/lab")
    p_up.add_argument("--hosts-json")
    p_up.add_argument("--subnet", help="move the inventory's hosts to this subnet (same offsets)")
    p_up.add_argument("--hosts-out", help="write the hosts started, with their addresses, to this JSON file")
    p_up.add_argument("--user", default=DEFAULT_ADMIN)
    p_up.add_argument("--no-publish", action="store_true")
    p_up.add_argument("--connection-vars", metavar="FILE",
                      help="write the SSH settings Ansible reaches the hosts with to this inventory file")
    p_down = sub.add_parser("down", help="remove the lab's containers, network and key")
    p_down.add_argument("--prefix", default="lab")
    p_down.add_argument("--connection-vars", metavar="FILE", help="remove this file written by up")
    p_info = sub.add_parser("info", help="print how to reach the lab")
    p_info.add_argument("--prefix", default="lab")
    p_info.add_argument("--inventory", default="inventory/lab")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z][a-z0-9]*", getattr(args, "prefix", "lab")):
        parser.error("--prefix must be lower-case letters and digits")
    try:
        if args.cmd == "engine":
            ensure_engine()
        elif args.cmd == "images":
            ensure_engine()
            for name in args.names:
                build_image(name)
        elif args.cmd == "up":
            cmd_up(args)
        elif args.cmd == "down":
            cmd_down(args)
        elif args.cmd == "info":
            cmd_info(args)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
