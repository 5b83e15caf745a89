"""tools/role_docs.py: each role's variables table, generated between markers, hand-written text kept."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import role_docs  # noqa: E402  pylint: disable=wrong-import-position


def make_role(base):
    role = base / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "---\nargument_specs:\n  main:\n    short_description: A demo.\n    options: &o\n"
        "      demo_port: {type: int, description: \"The port. [check: port]\"}\n"
        "      demo_names: {type: list, elements: str, description: \"Names. [check: nonempty; match a|b]\"}\n"
        "  validate:\n    short_description: Check.\n    options: *o\n")
    (role / "defaults" / "main.yml").write_text("---\ndemo_port: 8080\ndemo_names: [a]\n")
    return role


def test_a_role_without_readme_gets_one_with_its_table(tmp_path):
    text = role_docs.render(make_role(tmp_path))
    assert text.startswith("# Role `demo`\n\nA demo.\n")
    assert "| `demo_port` | int | `8080` | `port` | The port. |" in text
    assert "| `demo_names` | list of str | `[a]` | `nonempty`; `match a\\|b` | Names. |" in text


def test_text_outside_the_markers_is_kept_and_the_table_refreshed(tmp_path):
    role = make_role(tmp_path)
    (role / "README.md").write_text(f"# Mine\n\nProse.\n\n{role_docs.BEGIN}\nold table\n{role_docs.END}\n\nMore prose.\n")
    text = role_docs.render(role)
    assert text.startswith("# Mine\n\nProse.\n\n") and text.endswith(f"{role_docs.END}\n\nMore prose.\n")
    assert "old table" not in text and "`demo_port`" in text


def test_check_fails_on_a_stale_table_and_passes_once_written(tmp_path, monkeypatch):
    make_role(tmp_path)
    monkeypatch.setattr(role_docs, "ROOT", tmp_path)
    assert role_docs.main(["--check"]) == 1
    assert role_docs.main([]) == 0
    assert role_docs.main(["--check"]) == 0
    spec = tmp_path / "roles" / "demo" / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("The port.", "The listening port."))
    assert role_docs.main(["--check"]) == 1


def test_the_projects_tables_are_up_to_date():
    assert role_docs.main(["--check"]) == 0
    assert all((ROOT / "roles" / r.name / "README.md").is_file() for r in (ROOT / "roles").iterdir() if r.is_dir())
