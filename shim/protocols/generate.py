"""Regenerate the shim's protobuf modules, with the agent's generator (agent/protocols/generate.py).

    python -m shim.protocols.generate           # rewrite the *_pb2.py files and *_pb2.pyi stubs
    python -m shim.protocols.generate --check   # exit 1 if they are stale
"""

from __future__ import annotations

from agent.protocols import generate as agent_generate

PROTOS = ("task.proto", "events.proto", "store.proto", "cri.proto")


def main(argv: list[str] | None = None) -> int:
    return agent_generate.main(argv, "shim/protocols", PROTOS)


if __name__ == "__main__":
    raise SystemExit(main())
