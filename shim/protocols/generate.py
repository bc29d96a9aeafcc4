"""Regenerate the shim's protobuf modules (as agent/protocols/generate.py does for the agent's).

    python -m shim.protocols.generate           # rewrite the *_pb2.py files and *_pb2.pyi stubs
    python -m shim.protocols.generate --check   # exit 1 if they are stale
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
PROTOS = ("task.proto", "events.proto", "store.proto")


def generate(out: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    produced: list[Path] = []
    for proto in PROTOS:
        rel = f"shim/protocols/{proto}"
        if protoc.main(["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}", rel]) != 0:
            raise SystemExit(f"protoc failed on {rel}")
        stem = proto.removesuffix(".proto")
        produced += [Path("shim/protocols") / f"{stem}_pb2.py", Path("shim/protocols") / f"{stem}_pb2.pyi"]
    return produced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the committed files are current")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        produced = generate(Path(tmp))
        stale = [p for p in produced if not (ROOT / p).exists() or not filecmp.cmp(Path(tmp) / p, ROOT / p, False)]
        if args.check:
            for p in stale:
                print(f"stale: {p} (run: python -m shim.protocols.generate)", file=sys.stderr)
            return 1 if stale else 0
        for p in produced:
            os.replace(Path(tmp) / p, ROOT / p)
        print(f"wrote {len(produced)} modules ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
