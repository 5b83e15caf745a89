"""Every filter of filter_plugins/ is documented the way ansible-core documents its own: a sidecar
file filter_plugins/<filter name>.yml with DOCUMENTATION, EXAMPLES and RETURN, whose options are
exactly the function's parameters (``_input`` the first one), and that ansible-doc finds."""

import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "filter_plugins"


def registered_filters():
    """{filter name: function} of every FilterModule in filter_plugins/, loaded by path as Ansible does."""
    found = {}
    for path in sorted(PLUGINS.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, func in module.FilterModule().filters().items():
            assert name not in found, f"filter {name} is registered twice"
            found[name] = func
    return found


FILTERS = registered_filters()


def sidecar(name):
    """The parsed sidecar documentation of a filter."""
    path = PLUGINS / f"{name}.yml"
    assert path.is_file(), f"filter {name} has no documentation: write {path.relative_to(ROOT)}"
    return yaml.safe_load(path.read_text())


def python_default(value):
    """A parameter's default as YAML would write it (tuples are lists)."""
    return list(value) if isinstance(value, tuple) else value


def test_filters_are_found():
    assert {"firewall_check_flows", "firewall_ufw_state", "haproxy_time_ms", "infra_check_inventory",
            "infra_rolling_update_order"} <= set(FILTERS)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_has_a_sidecar_with_the_three_sections(name):
    doc = sidecar(name)
    assert set(doc) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    assert doc["DOCUMENTATION"]["name"] == name
    assert doc["DOCUMENTATION"]["short_description"] and doc["DOCUMENTATION"]["description"]
    assert doc["RETURN"]["_value"]["description"] and doc["RETURN"]["_value"]["type"]
    examples = yaml.safe_load(doc["EXAMPLES"])
    assert isinstance(examples, list) and examples, f"{name}: EXAMPLES must be YAML tasks"
    assert f"| {name}" in doc["EXAMPLES"], f"{name}: its examples never use it"


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_documented_options_are_the_function_parameters(name):
    options = sidecar(name)["DOCUMENTATION"]["options"]
    params = list(inspect.signature(FILTERS[name]).parameters.values())
    expected = ["_input"] + [p.name for p in params[1:]]
    assert sorted(options) == sorted(expected), (
        f"{name}: documented options {sorted(options)}, the function takes {expected}")
    for param, option in zip(params, expected):
        doc = options[option]
        assert doc.get("description") and doc.get("type"), f"{name}: option {option} needs a description and a type"
        has_default = param.default is not inspect.Parameter.empty
        assert bool(doc.get("required", False)) == (not has_default), f"{name}: option {option}: required is wrong"
        if has_default and param.default is not None:
            assert doc.get("default") == python_default(param.default), f"{name}: option {option}: default is wrong"
        else:
            assert "default" not in doc, f"{name}: option {option} has no default in the function"


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_positional_options_follow_the_signature(name):
    positional = [p.strip() for p in sidecar(name)["DOCUMENTATION"]["positional"].split(",")]
    params = [p.name for p in inspect.signature(FILTERS[name]).parameters.values()]
    assert positional == ["_input"] + params[1:len(positional)]


def test_every_sidecar_documents_a_registered_filter():
    orphans = sorted(p.name for p in PLUGINS.glob("*.yml") if p.stem not in FILTERS)
    assert not orphans, f"documentation of filters that do not exist (renamed?): {orphans}"


def test_ansible_doc_shows_every_filter():
    exe = shutil.which("ansible-doc") or str(Path(sys.executable).parent / "ansible-doc")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FILTER_PLUGINS=str(PLUGINS))
    out = subprocess.run([exe, "-t", "filter", "--json", *sorted(FILTERS)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120, check=True).stdout
    docs = json.loads(out)
    shown = {name.rpartition(".")[2]: doc for name, doc in docs.items()}
    assert set(shown) == set(FILTERS)
    for name, doc in shown.items():
        assert doc["doc"]["short_description"] == sidecar(name)["DOCUMENTATION"]["short_description"]
