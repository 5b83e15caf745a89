"""Make the project's filter, action and callback plugins and lab tool importable from the tests."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("filter_plugins", "action_plugins", "callback_plugins", "lab"):
    path = str(ROOT / sub)
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_terminal_summary(terminalreporter):
    """Print what a test recorded as its `summary` (record_property), e.g. the argument spec
    walk's counts: pytest-xdist's workers send it along with their reports."""
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        for key, value in getattr(report, "user_properties", []):
            if key == "summary":
                terminalreporter.write_line(value)
