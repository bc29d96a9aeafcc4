"""Compare two image builds: every output, then (if the root differs) the first differing file of the trees.

    python -m image.compare build/repro-a build/repro-b

Exit status 0 when every output is identical. When root.img differs, the
two root trees mkosi left behind are walked in sorted order and the first
path whose type, mode, owner, target or content differs is named, so a
reproducibility regression points at a file, not at a 100 MB blob.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

OUTPUTS = ("vmlinuz", "initrd.img", "root.img", "roothash", "cmdline", "manifest.json", "OVMF-AmdSev.fd",
           "cocoon-snp.igvm", "cocoon-tdx.igvm", "reference-values.json", "reference-values-sim.json")


def _describe(path: Path) -> tuple[object, ...]:
    st = os.lstat(path)
    if path.is_symlink():
        return ("symlink", os.readlink(path))
    if path.is_dir():
        return ("dir", oct(st.st_mode), st.st_uid, st.st_gid)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ("file", oct(st.st_mode), st.st_uid, st.st_gid, digest)


def first_difference(a: Path, b: Path) -> str | None:
    def entries(root: Path) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                out.append(os.path.relpath(os.path.join(dirpath, name), root))
        return sorted(out)

    ea, eb = entries(a), entries(b)
    for rel in sorted(set(ea) | set(eb)):
        pa, pb = a / rel, b / rel
        if not (pa.exists() or pa.is_symlink()):
            return f"{rel}: only in the second build"
        if not (pb.exists() or pb.is_symlink()):
            return f"{rel}: only in the first build"
        da, db = _describe(pa), _describe(pb)
        if da != db:
            return f"{rel}: {da} vs {db}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    a, b = Path(args[0]), Path(args[1])
    bad = []
    for name in OUTPUTS:
        same = (a / "out" / name).read_bytes() == (b / "out" / name).read_bytes()
        print(f"{'identical' if same else 'DIFFERS':9}  {name}")
        if not same:
            bad.append(name)
    if "root.img" in bad:
        where = first_difference(a / "mkosi" / "root", b / "mkosi" / "root")
        print(f"first difference in the root tree: {where or 'none (the trees match; the filesystem step differs)'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
