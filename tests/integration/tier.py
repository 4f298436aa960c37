"""Skipping a whole test tier when what it needs is missing, and saying so at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest


class TierSkip:
    """Skips every collected test under ``folder`` for one reason and warns in the terminal summary,
    so that a tier that did not run can't pass for one that did."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = folder, name
        self.skipped, self.reason = 0, ""

    def skip(self, items, reason: str) -> None:
        self.reason = reason
        marker = pytest.mark.skip(reason=reason)
        for item in items:
            if self.folder in Path(str(item.fspath)).resolve().parents:
                item.add_marker(marker)
                self.skipped += 1

    def report(self, terminalreporter) -> None:
        if self.skipped:
            terminalreporter.write_line(
                f"WARNING: {self.skipped} {self.name} were {self.reason.rstrip('.')}.", yellow=True, bold=True
            )
