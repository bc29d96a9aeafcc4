"""Regenerate the coordinator's protobuf modules, with the agent's generator (agent/protocols/generate.py).

    python -m coordinator.protocols.generate           # rewrite the *_pb2.py files and *_pb2.pyi stubs
    python -m coordinator.protocols.generate --check   # exit 1 if they are stale
"""

from __future__ import annotations

from agent.protocols import generate as agent_generate

PROTOS = ("userapi.proto", "meshapi.proto")


def main(argv: list[str] | None = None) -> int:
    return agent_generate.main(argv, "coordinator/protocols", PROTOS)


if __name__ == "__main__":
    raise SystemExit(main())
