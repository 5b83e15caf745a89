"""roles/common/files/read_state.py: apt's simulated upgrade is kept between runs and simulated
again as soon as anything apt reads changes (a package installed, the lists refreshed, a pin).

The script runs on the servers (`python3 -c`); here its functions run against files of a
temporary folder standing for apt's inputs, with apt-get replaced by a counter."""

import importlib.util
import json
import os
import pathlib
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "roles/common/files/read_state.py"


@pytest.fixture
def read_state(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("read_state", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists/partial").mkdir()
    (tmp_path / "lists/deb_dists_bookworm_InRelease").write_text("one")
    (tmp_path / "status").write_text("Package: nginx\n")
    (tmp_path / "etc/preferences.d").mkdir(parents=True)
    monkeypatch.setattr(module, "APT_INPUTS", (str(tmp_path / "status"), str(tmp_path / "missing"),
                                               str(tmp_path / "lists"), str(tmp_path / "etc")))
    monkeypatch.setattr(module, "CACHE", str(tmp_path / "cache/apt-upgrade-simulation.json"))
    calls = []

    def apt_get(argv, **_):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=f"Inst libssl3 (simulation {len(calls)})\n", stderr="")
    monkeypatch.setattr(module.subprocess, "run", apt_get)
    module.calls = calls
    return module


def test_the_simulation_is_kept_and_read_back_while_apt_inputs_stay(read_state):
    first = read_state.simulate_upgrade(keep=True)
    assert first == "Inst libssl3 (simulation 1)\n"
    assert read_state.simulate_upgrade(keep=True) == first
    assert len(read_state.calls) == 1
    kept = pathlib.Path(read_state.CACHE)
    assert oct(kept.parent.stat().st_mode & 0o777) == "0o700"
    assert json.loads(kept.read_text())["output"] == first


@pytest.mark.parametrize("change", ["refreshed list", "new list", "dpkg status", "pin added", "partial only"])
def test_any_change_to_what_apt_reads_simulates_again(read_state, tmp_path, change):
    read_state.simulate_upgrade(keep=True)
    if change == "refreshed list":
        target = tmp_path / "lists/deb_dists_bookworm_InRelease"
        os.utime(target, ns=(1, target.stat().st_mtime_ns + 1_000_000))
    elif change == "new list":
        (tmp_path / "lists/deb_dists_bookworm-security_InRelease").write_text("two")
    elif change == "dpkg status":
        (tmp_path / "status").write_text("Package: nginx\n\nPackage: curl\n")
    elif change == "pin added":
        (tmp_path / "etc/preferences.d/pin").write_text("Package: *\n")
    else:
        (tmp_path / "lists/partial/download").write_text("half")
    again = read_state.simulate_upgrade(keep=True)
    if change == "partial only":  # apt's downloads in progress are not its input
        assert len(read_state.calls) == 1
    else:
        assert len(read_state.calls) == 2 and again.endswith("(simulation 2)\n")


def test_check_mode_keeps_nothing_and_a_damaged_cache_is_simulated_again(read_state):
    read_state.simulate_upgrade(keep=False)
    assert not os.path.exists(read_state.CACHE)
    os.makedirs(os.path.dirname(read_state.CACHE))
    pathlib.Path(read_state.CACHE).write_text("{not json")
    assert read_state.simulate_upgrade(keep=True).endswith("(simulation 2)\n")
    assert read_state.simulate_upgrade(keep=True).endswith("(simulation 2)\n")


def test_a_failing_simulation_stops_the_read_with_apt_own_words(read_state, monkeypatch):
    monkeypatch.setattr(read_state.subprocess, "run", lambda argv, **_: subprocess.CompletedProcess(
        argv, 100, stdout="", stderr="E: The package lists or status file could not be parsed"))
    with pytest.raises(SystemExit, match="could not be parsed"):
        read_state.simulate_upgrade(keep=True)
    assert not os.path.exists(read_state.CACHE)


def test_simulate_alone_prints_the_simulation_and_keeps_it_for_the_next_read(read_state, capsys):
    read_state.main(["read_state.py", "--simulate", "1"])
    assert json.loads(capsys.readouterr().out) == {"simulated": "Inst libssl3 (simulation 1)\n"}
    # The next run's first read finds it: no second apt-get.
    assert read_state.simulate_upgrade(keep=True) == "Inst libssl3 (simulation 1)\n"
    assert len(read_state.calls) == 1


def test_simulate_alone_in_check_mode_keeps_nothing(read_state, capsys):
    read_state.main(["read_state.py", "--simulate", "0"])
    assert json.loads(capsys.readouterr().out)["simulated"].endswith("(simulation 1)\n")
    assert not os.path.exists(read_state.CACHE)


def fake_proc(root, chain):
    """A /proc of processes {pid: (ppid, environment)} under root."""
    for pid, (ppid, env) in chain.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in env.items()) + b"\0")
        (root / str(pid) / "stat").write_text(f"{pid} (sudo (x) y) S {ppid} {pid} 0 0\n")


def test_the_controller_address_is_read_from_the_session_above_sudo(read_state, tmp_path):
    # python3 under sudo (its environment reset) <- sudo <- the SSH session's shell.
    fake_proc(tmp_path / "proc", {30: (20, {"PATH": "/usr/bin"}), 20: (10, {"SSH_CLIENT": "172.30.10.1 40112 22"}),
                                  10: (1, {"SSH_CLIENT": "192.0.2.9 1 22"})})
    assert read_state.controller_address(30, str(tmp_path / "proc")) == "172.30.10.1"


def test_no_ssh_session_or_an_unreadable_process_gives_no_controller_address(read_state, tmp_path):
    fake_proc(tmp_path / "none", {30: (20, {"PATH": "/usr/bin"}), 20: (1, {"HOME": "/root"})})
    assert read_state.controller_address(30, str(tmp_path / "none")) == ""
    fake_proc(tmp_path / "gone", {30: (20, {"PATH": "/usr/bin"})})
    assert read_state.controller_address(30, str(tmp_path / "gone")) == ""


def test_the_read_names_the_controller_address(read_state, monkeypatch, capsys):
    monkeypatch.setattr(read_state, "controller_address", lambda: "172.30.10.1")
    read_state.main(["read_state.py", "nobody-here", "0", "0", "0"])
    assert json.loads(capsys.readouterr().out)["controller_address"] == "172.30.10.1"
