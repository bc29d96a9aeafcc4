"""The two sides: agent/ is exactly what the guest runs, and the README's map names every package.

The image copies agent/ whole into the measured root (image/build.py:install_agent), so a host-only
module left in agent/ would ship in every guest and change its measurement for nothing. The guest's
module set is derived statically from the image's entry points (agent/__main__.py, which the unit
runs, and agent/warmup.py, which the build runs inside the root), following every import, those
inside functions and ``importlib`` strings included.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agent"
ENTRY_POINTS = ("agent.__main__", "agent.warmup")
#: the guest's third-party imports: the wheels of image/requirements.txt, by import name
GUEST_WHEELS = {"cryptography", "regorus", "google", "grpc", "typing_extensions", "pyroute2", "cffi", "jwcrypto",
                "rfc8785"}
MODULE_STRING = re.compile(r"^agent(\.[A-Za-z_]\w*)+$")


def module_path(name: str) -> Path | None:
    parts = name.split(".")
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path, name: str) -> tuple[set[str], set[str]]:
    """(agent modules, other top-level names) that a module imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if module_path(f"{base}.{alias.name}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value):
            found.add(node.value)
    ours = {m for m in found if m == "agent" or m.startswith("agent.")}
    return {m for m in ours if module_path(m)}, {m.split(".")[0] for m in found - ours}


def guest_modules() -> tuple[set[str], dict[str, set[str]]]:
    seen: set[str] = set()
    outside: dict[str, set[str]] = {}
    todo = list(ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        path = module_path(name)
        assert path is not None, name
        ours, others = imports_of(path, name)
        todo += sorted(ours - seen)
        outside[name] = others
    return seen, outside


def shipped_modules() -> set[str]:
    out = set()
    for path in AGENT.rglob("*.py"):
        if path.name == "generate.py" and path.parent.name == "protocols":
            continue  # not copied into the image (install_agent skips it): the host's protoc step
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out.add(".".join(parts))
    return out


def test_the_image_ships_only_modules_the_guest_imports() -> None:
    reached, _ = guest_modules()
    assert shipped_modules() - reached == set(), "host-only code in agent/: move it to the host side"
    assert reached <= shipped_modules()


def test_guest_modules_import_nothing_from_outside_agent() -> None:
    _, outside = guest_modules()
    allowed = set(sys.stdlib_module_names) | GUEST_WHEELS | {"__future__"}
    wrong = {name: sorted(others - allowed) for name, others in outside.items() if others - allowed}
    assert wrong == {}


def test_the_walk_sees_lazy_and_string_imports(tmp_path: Path) -> None:
    """The derivation itself: an import inside a function and an importlib string both count."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from agent import initdata\n    import launcher.vm\n"
                   "MODS = ['agent.tee.snp']\n")
    ours, others = imports_of(src, "agent.m")
    assert {"agent", "agent.initdata", "agent.tee.snp"} <= ours
    assert "launcher" in others


def layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Layout")
    end = text.find("\n## ", start + 1)
    return text[start: end if end > 0 else None]


def test_every_top_level_package_is_on_the_readme_map() -> None:
    section = layout_section()
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    assert "agent" in packages and "cocoon" in packages
    missing = [p for p in packages if not re.search(rf"(^|\s|`){re.escape(p)}/", section)]
    assert missing == [], "name these packages in README.md's Layout"
