"""callback_plugins/infra_prefork.py: the Jinja plugins loaded once, before the workers fork.

A worker forked after preload() finds every filter and test already wrapped: asking for one,
the project's or Ansible's, imports no plugin file again (the loader's import is made to fail
here to prove it). A loader that fails costs time, not the run."""

from pathlib import Path

import infra_prefork
import pytest
from ansible.plugins import loader as plugin_loader
from ansible.plugins.loader import filter_loader, test_loader

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(name="project_filters")
def fixture_project_filters():
    """The loader as ansible.cfg configures it: the project's filter_plugins on its path."""
    filter_loader.add_directory(str(ROOT / "filter_plugins"))
    return filter_loader


def test_a_worker_after_preload_imports_no_filter_or_test_again(project_filters, monkeypatch):
    counts = infra_prefork.preload()
    # Ansible's own (core, mathstuff, urls, encryption...) and the project's.
    assert counts["filter"] > 100, counts
    assert counts["test"] > 50, counts

    def refuse(*args, **kwargs):
        raise AssertionError(f"a plugin file was imported again: {args[1:]}")

    monkeypatch.setattr(plugin_loader.PluginLoader, "_load_module_source", refuse)
    # The project's filter, Ansible's filters and tests: all found without an import.
    assert project_filters.get("infra_site_roles") is not None
    assert project_filters.get("ansible.builtin.to_json") is not None
    assert project_filters.get("regex_replace") is not None
    assert test_loader.get("version") is not None


def test_a_loader_that_fails_leaves_the_run_alone(monkeypatch):
    def broken():
        raise RuntimeError("the loader's interface changed")

    monkeypatch.setattr(infra_prefork, "preload", broken)
    # Says so at -vvv, raises nothing: the playbook goes on, each worker loading its own.
    assert infra_prefork.CallbackModule().v2_playbook_on_start(None) is None


def test_the_callback_needs_no_enabling():
    # ansible.cfg's callbacks_enabled is the user's (and lab/bench.py sets its own): the
    # preload must not depend on it.
    assert infra_prefork.CallbackModule.CALLBACK_NEEDS_ENABLED is False
    assert "callback_plugins = callback_plugins" in (ROOT / "ansible.cfg").read_text(encoding="utf-8")
