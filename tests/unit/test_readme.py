"""README's layout table matches the tree: every path it lists exists, and every top-level
directory of the project is in it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def layout_paths():
    """The paths of the first column of README's layout table."""
    text = (ROOT / "README.md").read_text()
    table = text.partition("## Layout")[2].partition("\n## ")[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return [path for row in rows for path in re.findall(r"`([^`]+)`", row)]


def test_layout_table_lists_only_what_exists():
    paths = layout_paths()
    assert len(paths) > 20
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, f"README's layout table lists paths that do not exist: {missing}"


def test_layout_table_covers_every_top_level_directory():
    listed = {path.rstrip("/").split("/")[0] for path in layout_paths()}
    directories = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"__pycache__"}
    assert directories <= listed, f"not in README's layout table: {sorted(directories - listed)}"
