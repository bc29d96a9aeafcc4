"""The ``cocoon`` command: one entry point, subcommands registered per subsystem.

Each subsystem module exposes ``register(subparsers)``; handlers import their
heavy dependencies lazily so ``cocoon measure`` starts fast. Errors that are
the input's fault (our error types) print one line and exit 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cocoon import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cocoon",
        description="Guest side of confidential containers: measure, pack and verify confidential VMs.",
    )
    parser.add_argument("--version", action="version", version=f"cocoon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from igvm import cli as igvm_cli

    igvm_cli.register(sub)
    from agent import cli as agent_cli
    from agent import ctl
    from agent.policy import cli as policy_cli
    from launcher import cli as launcher_cli
    from verifier import cli as verifier_cli

    agent_cli.register(sub)
    policy_cli.register(sub)
    ctl.register(sub)
    verifier_cli.register(sub)
    launcher_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from agent.errors import AgentError
    from igvm.errors import MeasureError

    try:
        return int(args.handler(args) or 0)
    except (MeasureError, AgentError) as exc:
        print(f"cocoon {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
