"""Why a policy said no, in words a person can act on.

regorus' coverage report says which policy lines ran. In a rule body the
expressions run top to bottom and evaluation stops at the first false one,
so a line that ran and is followed by a line that did not is where a body
gave up: the frontier. For each frontier line we show the source text and
the value of every ``input.…`` path it mentions, which usually names the
field that differed (an image name, an argument list, an env variable).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

INPUT_PATH = re.compile(r"\binput((?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])+)")


@dataclass
class Stop:
    file: str
    line: int
    source: str
    inputs: dict[str, Any] = field(default_factory=dict)


def _lookup(doc: Any, path: str) -> Any:
    node = doc
    for part in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]", path):
        key, index = part
        try:
            node = node[key] if key else node[int(index)]
        except (KeyError, IndexError, TypeError):
            return "<absent>"
    return node


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def _same_body(lines: list[str], here: int, nxt: int) -> bool:
    """True when ``nxt`` continues the body ``here`` is in (no closing brace between, not shallower)."""
    if not (0 < here <= len(lines) and 0 < nxt <= len(lines)):
        return False
    between = lines[here : nxt - 1]
    if any(line.strip().startswith("}") for line in between):
        return False
    return _indent(lines[nxt - 1]) >= _indent(lines[here - 1]) > 0


def stops(coverage: dict[str, Any], input_doc: Any, limit: int = 10) -> list[Stop]:
    """Frontier lines of one evaluation, most specific (deepest in the file) last."""
    out: list[Stop] = []
    for f in coverage.get("files", []):
        lines = f.get("code", "").split("\n")
        covered = set(f.get("covered", []))
        not_covered = set(f.get("not_covered", []))
        code_lines = sorted(covered | not_covered)
        for here, nxt in itertools.pairwise(code_lines):
            if here in covered and nxt in not_covered and _same_body(lines, here, nxt):
                text = lines[here - 1].strip() if 0 < here <= len(lines) else ""
                if text.startswith(("default ", "#")) or not text:
                    continue
                paths = {f"input{m}": _lookup(input_doc, m) for m in INPUT_PATH.findall(text)}
                out.append(Stop(f.get("path", "?"), here, text, paths))
    return out[:limit]


def render(endpoint: str, allowed: bool, prints: list[str], found: list[Stop]) -> str:
    lines = [f"{endpoint}: {'ALLOWED' if allowed else 'DENIED'}"]
    if prints:
        lines.append("policy said:")
        lines += [f"  {p}" for p in prints]
    if not allowed:
        if found:
            lines.append("evaluation stopped at (a condition that did not hold):")
            for s in found:
                lines.append(f"  {s.file}:{s.line}: {s.source}")
                for path, value in s.inputs.items():
                    lines.append(f"      {path} = {json.dumps(value)[:200]}")
        else:
            lines.append("no rule for this request matched at all (only its default applied)")
    return "\n".join(lines)
