"""agent/warmup.py: the start-up sequence run early on its own inputs (the initrd starts it)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent import warmup

ROOT = Path(__file__).resolve().parent.parent


def script_env() -> dict[str, str]:
    """The path layout the initrd gives it: the agent's directory, then its dependencies (here the venv's)."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    return {**os.environ, "PYTHONPATH": f"{ROOT}:{site}"}


def test_run_goes_the_whole_way_to_ready() -> None:
    # ready means: its document parsed, its policy compiled, its sim report signed and the digest matched
    assert warmup.run() is True


def test_script_prints_one_line_and_exits_zero() -> None:
    out = subprocess.run([sys.executable, "-S", "-P", str(ROOT / "agent/warmup.py")], env=script_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.fullmatch(r"cocoon-warmup: ready in \d+ ms\n", out.stdout), out.stdout
    assert out.stderr == ""  # the binding's own log lines are not this process's to print


def test_a_failure_says_why_and_exits_nonzero(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> bool:
        raise RuntimeError("no regorus here")

    monkeypatch.setattr(warmup, "run", broken)
    assert warmup.main() == 1
    assert not logging.root.manager.disable  # logging is this process's again (in the guest it exits)
    assert re.fullmatch(r"cocoon-warmup: failed after \d+ ms: RuntimeError\('no regorus here'\)\n",
                        capsys.readouterr().out)


def test_not_ready_is_reported_as_such(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(warmup, "run", lambda: False)
    assert warmup.main() == 1
    assert capsys.readouterr().out.startswith("cocoon-warmup: not ready")


def test_takes_nothing_from_the_host_writes_nothing_opens_no_socket() -> None:
    """It runs before systemd, as root, beside the agent: everything it touches is code or its own data.

    An audit hook (PEP 578) in a fresh interpreter records every open, socket and process start while
    ``run()`` goes through the whole sequence; the only event expected is the probe's own write to
    /dev/null afterwards, which shows the hook sees what it should."""
    probe = textwrap.dedent("""
        import os, sys
        seen = []
        WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        def hook(event, args):
            if event == "open":
                path, mode, flags = args
                writes = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITE)
                if writes or not str(path).endswith((".py", ".pyc", ".so", ".pyd")) and not os.path.isdir(path):
                    seen.append(f"open {path!r} {mode!r} {flags!r}")
            elif event.startswith(("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.system",
                                   "os.remove", "os.rename", "os.mkdir", "shutil.")):
                seen.append(f"{event} {args!r}")
        sys.addaudithook(hook)
        from agent import warmup
        ready = warmup.run()
        open(os.devnull, "w").close()  # the hook's own check: this one must be seen
        print(ready)
        for line in seen:
            print(line)
    """)
    out = subprocess.run([sys.executable, "-S", "-P", "-c", probe], env=script_env(), capture_output=True,
                         text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "True"
    assert len(lines) == 2 and lines[1].startswith("open '/dev/null' 'w'"), lines[1:]
