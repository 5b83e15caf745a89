"""Make the project's filter and action plugins and lab tool importable from the tests."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("filter_plugins", "action_plugins", "lab"):
    path = str(ROOT / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
