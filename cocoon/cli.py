"""The ``cocoon`` command: one entry point, subcommands registered per subsystem.

Each subsystem module exposes ``register(subparsers)``; handlers import their
heavy dependencies lazily so ``cocoon measure`` starts fast. Errors that are
the input's fault (our error types) print one line and exit 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from cocoon import __version__

#: which module registers each subcommand, so one invocation imports only its own subsystem
#: (``cocoon measure`` need not load the agent, the policy engine or the verifier)
SUBSYSTEMS: dict[str, tuple[str, ...]] = {
    "igvm.cli": ("measure", "igvm", "reference-values"),
    "cocoon.initdata_cli": ("initdata", "sim-tee"),
    "cocoon.policy_cli": ("policy",),
    "cocoon.ctl": ("ctl",),
    "cocoon.verify": ("verify",),
    "launcher.cli": ("launch", "demo"),
    "cocoon.generate_cli": ("generate", "manifest"),
    "coordinator.kbs.cli": ("kbs",),
    "coordinator.cli": ("coordinator", "set", "initializer", "recover"),
    "cocoon.meshdemo": ("mesh-demo",),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` a known subcommand, only its subsystem is imported and registered."""
    parser = argparse.ArgumentParser(
        prog="cocoon",
        description="Guest side of confidential containers: measure, pack and verify confidential VMs.",
    )
    parser.add_argument("--version", action="version", version=f"cocoon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = [m for m, commands in SUBSYSTEMS.items() if command in commands] or list(SUBSYSTEMS)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list[0] if args_list else None)
    args = parser.parse_args(args_list)
    from agent.errors import AgentError
    from generator.errors import GenerateError
    from igvm.errors import MeasureError

    try:
        return int(args.handler(args) or 0)
    except (MeasureError, AgentError, GenerateError) as exc:
        print(f"cocoon {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
