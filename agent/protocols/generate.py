"""Regenerate the Python protobuf modules from the .proto files here.

    python -m agent.protocols.generate           # rewrite the *_pb2.py files and *_pb2.pyi stubs
    python -m agent.protocols.generate --check   # exit 1 if they are stale

The generated modules are committed so the guest image needs no protoc; the
test suite runs ``--check`` so a .proto edit without regeneration fails CI.
The ``.pyi`` stubs exist for the type checker only (protobuf builds message
classes at import time, so mypy sees no names in the modules themselves); the
image does not install them. No ``*_pb2_grpc`` stubs: the gRPC server routes
through generic handlers built from the descriptors (agent/grpc_server.py) and
host clients call by method path (launcher/client.py), so stubs would ship in
the guest unused.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTOS = ("types.proto", "oci.proto", "csi.proto", "health.proto", "agent.proto", "ttrpc.proto", "cocoon.proto",
          "attestation_agent.proto", "confidential_data_hub.proto")


def generate(out: Path, package: str = "agent/protocols", protos: tuple[str, ...] = PROTOS) -> list[Path]:
    """protoc each of ``protos`` (in ``package``, relative to the repository) into ``out``; the files made."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    produced: list[Path] = []
    for proto in protos:
        rel = f"{package}/{proto}"
        args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}"]
        if protoc.main([*args, rel]) != 0:
            raise SystemExit(f"protoc failed on {rel}")
        stem = proto.removesuffix(".proto")
        produced.append(Path(package) / f"{stem}_pb2.py")
        produced.append(Path(package) / f"{stem}_pb2.pyi")
    return produced


def main(argv: list[str] | None = None, package: str = "agent/protocols", protos: tuple[str, ...] = PROTOS) -> int:
    """The command for ``package``'s protos (shim/protocols/generate.py runs it for the shim's)."""
    command = "python -m " + package.replace("/", ".") + ".generate"
    parser = argparse.ArgumentParser(prog=command, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the committed files are current")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        produced = generate(Path(tmp), package, protos)
        stale = [p for p in produced if not (ROOT / p).exists() or not filecmp.cmp(Path(tmp) / p, ROOT / p, False)]
        if args.check:
            for p in stale:
                print(f"stale: {p} (run: {command})", file=sys.stderr)
            return 1 if stale else 0
        for p in produced:
            os.replace(Path(tmp) / p, ROOT / p)
        print(f"wrote {len(produced)} modules ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
