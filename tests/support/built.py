"""Outputs of an earlier image build that several tests reuse rather than build again."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def guest_kernel() -> Path | None:
    """The guest's kernel: from a build under build/ or out/, or a saved mkosi tree; None before any build."""
    found = [*(ROOT / "build").glob("*/out/vmlinuz"), *(ROOT / "out").glob("vmlinuz"),
             *Path(os.path.expanduser("~/.cache/cocoon")).glob("tree-*/root/boot/vmlinuz-*")]
    return found[0] if found else None
