"""Lists the browser test's screenshots at the end of the run (their paths are also printed by the test)."""

import time

from tests.support.paths import ROOT

ARTIFACTS = ROOT / "test-artifacts"
_STARTED = time.time()


def pytest_terminal_summary(terminalreporter) -> None:
    shots = sorted(p for p in ARTIFACTS.glob("*.png") if p.stat().st_mtime >= _STARTED) if ARTIFACTS.is_dir() else []
    if shots:
        terminalreporter.section("test artefacts")
        for p in shots:
            terminalreporter.write_line(str(p))
