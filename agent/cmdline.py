"""Agent settings from the kernel command line (``cocoon.<key>=<value>``).

In the image the kernel command line is part of the measurement (SNP
kernel-hashes, TDX RTMR2), so settings placed there are as trustworthy as
the image; the host cannot change them without changing the measurement.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection

PREFIX = "cocoon."


def parse(text: str, keys: Collection[str]) -> dict[str, list[str]]:
    """The ``cocoon.<key>=`` values for ``keys`` (the daemon's OPTIONS name them), in order (``listen``
    may repeat); other cocoon keys are ignored."""
    out: dict[str, list[str]] = {}
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    for token in tokens:
        if not token.startswith(PREFIX) or "=" not in token:
            continue
        key, value = token[len(PREFIX) :].split("=", 1)
        if key in keys:
            out.setdefault(key, []).append(value)
    return out


def read(path: str, keys: Collection[str]) -> dict[str, list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse(f.read(1 << 16), keys)
    except OSError:
        return {}
