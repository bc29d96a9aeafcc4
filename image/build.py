"""Build the guest image: mkosi root tree -> agent + wheels -> erofs -> dm-verity -> kernel cmdline.

    python -m image.build [--out out] [--cache ~/.cache/cocoon]     (what `make image` runs)

mkosi 24.3 builds only the root *tree* (Format=directory): its systemd-repart
254 cannot make a reproducible verity root hash (random salt and UUID; fixed
in systemd 255, not in bookworm). cocoon makes the filesystem with
`mkfs.erofs -T <epoch> -U <uuid> --all-root -x-1` and the verity hash tree
with agent.verity (byte-identical to veritysetup, salt and UUID derived from
the seed). SOURCE_DATE_EPOCH is the last commit's time. Outputs in out/:
vmlinuz, initrd.img (image/initrd.py), root.img (erofs data, then the
verity hash area), roothash, cmdline, manifest.json (packages and versions),
build-stats.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT_DIR = Path(__file__).resolve().parent.parent
SEED = "6b6f636f-6f6e-4000-8000-000000000000"  # same as mkosi.conf's Seed=
# Kernel modules the guest needs (the rest of /usr/lib/modules is pruned): block and console devices,
# the verity root, container layers, vsock, the confidential-computing guest drivers.
MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "virtio_net", "dm_verity", "dm_mod", "erofs",
           "overlay", "loop", "vsock", "vmw_vsock_virtio_transport", "sev_guest", "tdx_guest", "tsm",
           "veth", "bridge", "tun", "crc32c_generic", "qemu_fw_cfg")
# The image runs no udev, so no driver is loaded for a device by its modalias: those are loaded by name.
# What the agent needs before it binds, the initrd loads (image/initrd.py: fw_cfg carries the sim TEE's PSP
# document under QEMU, the TEE guest drivers make /dev/sev-guest, /dev/tdx_guest and the configfs-tsm
# provider, the virtio vsock transport carries Kata's default agent address), so the agent need not wait
# for systemd-modules-load. Listed here, loaded by systemd-modules-load once the agent is up (a drop-in
# orders it after the agent; nothing here is needed before READY): virtio_net binds the NICs the runtime
# hot-plugs. Modules a feature asks for (overlay, loop, dm-verity targets, veth, bridge, tun)
# the kernel loads itself on first use (request_module runs modprobe; no udev involved); overlay and loop
# are loaded here anyway so a container's first mount does not pay for it.
MODULES_LOAD = ("virtio_net", "overlay", "loop")
# Units a single-purpose guest has no use for, masked: every unit start costs a fork+exec and library loads
# (seconds in sum under TCG). networkd would also fight the agent, which configures interfaces itself as
# Kata's runtime tells it; logind/utmp/getty serve logins there are none of; the root is read-only, so
# random-seed, journal-flush, machine-id-commit, firstboot, repart and sysext have nothing to do.
MASKED_UNITS = ("getty.target", "serial-getty@.service", "console-getty.service", "getty@.service",
                "systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
                "systemd-network-generator.service", "systemd-logind.service", "systemd-user-sessions.service",
                "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service", "systemd-random-seed.service",
                "systemd-journal-flush.service", "systemd-machine-id-commit.service", "systemd-firstboot.service",
                "systemd-repart.service", "systemd-sysext.service", "systemd-pstore.service",
                "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "systemd-pcrphase.service",
                "systemd-pcrphase-sysinit.service", "dpkg-db-backup.timer", "fstrim.timer",
                "systemd-tmpfiles-clean.timer", "systemd-ask-password-wall.path",
                # configfs is loaded by the initrd and FUSE is built in: nothing for these to load
                "modprobe@configfs.service", "modprobe@fuse.service",
                # The root is erofs (read-only, nothing to remount); device nodes come from devtmpfs and the
                # modules the initrd and modules-load.d load, not from kmod's static list.
                "systemd-remount-fs.service", "kmod-static-nodes.service", "systemd-tmpfiles-setup-dev.service",
                # No journald: nothing in the image could read it (no shell, no journalctl user); the agent
                # writes to the console, the channel the host reads anyway (as Kata's agent forwards its log).
                "systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket",
                "systemd-journald-audit.socket", "systemd-journal-catalog-update.service",
                # No udev, as in Kata's guests: udevd and its coldplug cost ~2.5 s of a TCG boot; the agent finds
                # the two names it needs (virtio port names, disk serials) in sysfs itself (agent/devices.py).
                "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
                "systemd-udev-trigger.service", "systemd-udev-settle.service",
                # Kernel debugging and tracing interfaces have no business in a confidential guest; nothing
                # here uses FUSE, /dev/hugepages or the root namespace's /dev/mqueue (a container's mqueue
                # comes from its own spec's mounts). PID 1 forks mount(8) for mount units before it forks
                # any service, so each of these was ~0.1 s more before the agent's start under TCG.
                "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-fs-fuse-connections.mount",
                "dev-hugepages.mount", "dev-mqueue.mount")
# Generators run (one exec each) before systemd loads a unit; none is needed: /var and /tmp are mount
# units (image tree), and the rest look for things this image never has (GPT auto-partitions, crypttab,
# SysV scripts, gettys) or take orders from the command line. Masked the way systemd documents: a
# /dev/null link in /etc.
MASKED_GENERATORS = ("systemd-fstab-generator", "systemd-cryptsetup-generator", "systemd-debug-generator",
                     "systemd-getty-generator", "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator",
                     "systemd-integritysetup-generator", "systemd-rc-local-generator", "systemd-run-generator",
                     "systemd-system-update-generator", "systemd-sysv-generator", "systemd-veritysetup-generator")
PRUNE = ("boot", "usr/lib/firmware", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
         "usr/lib/x86_64-linux-gnu/gconv", "var/lib/initramfs-tools", "usr/share/initramfs-tools",
         "etc/initramfs-tools")


def log(msg: str) -> None:
    print(f"image: {msg}", file=sys.stderr, flush=True)


def run(*argv: str, **kw: object) -> str:
    out: str = subprocess.run(argv, check=True, capture_output=True, text=True,  # type: ignore[call-overload]
                              **kw).stdout  # (kw's keys are subprocess.run's own; mypy cannot see that)
    return out


def derive(name: str) -> bytes:
    """Deterministic per-build values from the seed (what systemd-repart >= 255 does for verity)."""
    return hashlib.sha256(f"{SEED}/{name}".encode()).digest()


def source_date_epoch() -> int:
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    try:
        return int(run("git", "-C", str(ROOT_DIR), "log", "-1", "--format=%ct").strip())
    except (subprocess.CalledProcessError, FileNotFoundError, ValueError):
        return 1700000000


def mkosi_inputs_digest() -> str:
    """What the mkosi tree depends on in this checkout: mkosi.conf and the package-manager tree."""
    h = hashlib.sha256((ROOT_DIR / "mkosi.conf").read_bytes())
    for path in sorted((ROOT_DIR / "mkosi.pkgmngr").rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(ROOT_DIR)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def root_tree(build: Path, epoch: int, cache: Path, reuse: bool) -> Path:
    """mkosi's tree, or the saved copy of it when mkosi's inputs did not change (agent-only rebuilds).

    mkosi's own mtimes do not reach the image (mkfs.erofs -T sets them all),
    so a saved tree from an earlier commit yields the same image as a fresh
    mkosi run against the same archive state. Clean builds (tests,
    repro-check) pass --fresh.
    """
    saved = cache / f"tree-{mkosi_inputs_digest()}"
    out = build / "mkosi"
    if reuse and (saved / "root").is_dir() and (saved / "root.manifest").is_file():
        log(f"reusing the mkosi tree saved in {saved} (mkosi inputs unchanged)")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        run("cp", "-a", str(saved / "root"), str(out / "root"))
        shutil.copy(saved / "root.manifest", out / "root.manifest")
        if saved_tree_locked(out / "root.manifest"):
            return out
        log("running mkosi afresh: the lock may be newer than the saved tree (a fresh tree that still differs "
            "stops the build)")
        shutil.rmtree(out)  # nothing of the stale copy may reach the fresh tree
    mkosi(build, epoch)
    locked(out / "root.manifest", cache)  # before saving: a tree the lock refuses is not kept
    tmp = saved.with_name(saved.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run("cp", "-a", str(out / "root"), str(tmp / "root"))
    shutil.copy(out / "root.manifest", tmp / "root.manifest")
    shutil.rmtree(saved, ignore_errors=True)
    tmp.rename(saved)
    return out


def lock_mode() -> str:
    """``COCOON_LOCK``: strict (default) or report (image/lock.py MODES)."""
    return os.environ.get("COCOON_LOCK", "strict")


def locked(manifest: Path, cache: Path) -> None:
    """The packages must be image/packages.lock's (see image/lock.py); the build stops naming any that differ.

    ``COCOON_LOCK=report`` (the test suite's and the demo's setting) only warns about newer versions."""
    from image import lock

    try:
        log(lock.check(manifest, cache / "apt-index", mode=lock_mode()))
    except lock.LockError as exc:
        raise SystemExit(f"image: {exc}") from None


def saved_tree_locked(manifest: Path, lockfile: Path | None = None) -> bool:
    """Whether a saved tree may be reused: its packages are the lock's (offline, by version; its bytes were
    checked when it was made). Under ``COCOON_LOCK=report`` a difference is a warning and the tree is reused.
    False sends the build to mkosi: the lock may have moved on (a commit that accepted a Debian update)
    since the tree was saved."""
    from image import lock

    try:
        lock.check_versions(manifest, lockfile or lock.LOCK)
    except lock.LockError as exc:
        if lock_mode() == "report":
            log(f"WARNING (COCOON_LOCK=report): {exc}")
            return True
        log(str(exc))
        return False
    log("packages match image/packages.lock (versions; the saved tree was checked when made)")
    return True


def mkosi(build: Path, epoch: int) -> Path:
    out = build / "mkosi"
    out.mkdir(parents=True, exist_ok=True)
    log(f"mkosi: root tree (SOURCE_DATE_EPOCH={epoch})")
    pkg_cache = Path(os.path.expanduser("~/.cache/cocoon/mkosi"))
    pkg_cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mkosi", "--force", "--output-dir", str(out), "--cache-dir", str(pkg_cache),
                    "--source-date-epoch", str(epoch), "build"],
                   check=True, cwd=ROOT_DIR, stdout=subprocess.DEVNULL)
    return out


def prune_modules(root: Path) -> str:
    versions = sorted(p.name for p in (root / "usr/lib/modules").iterdir())
    if len(versions) != 1:
        raise SystemExit(f"image: expected one kernel in the tree, found {versions}")
    kver = versions[0]
    mdir = root / "usr/lib/modules" / kver
    deps: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    for line in (mdir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        name = re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", os.path.basename(path)).replace("-", "_")
        paths[name] = path
        deps[name] = rest.split()
    keep: set[str] = set()
    todo = [m for m in MODULES if m in paths]
    while todo:
        m = todo.pop()
        if m in keep:
            continue
        keep.add(m)
        for dep in deps[m]:
            todo.append(re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", os.path.basename(dep)).replace("-", "_"))
    keep_paths = {paths[m] for m in keep}
    for ko in list((mdir / "kernel").rglob("*.ko*")):
        if str(ko.relative_to(mdir)) not in keep_paths:
            ko.unlink()
    run("depmod", "-b", str(root), kver)
    log(f"kernel {kver}: kept {len(keep)} modules")
    return kver


def install_agent(root: Path, cache: Path) -> None:
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    req = ROOT_DIR / "image" / "requirements.txt"
    run(sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "--no-deps", "--dest", str(wheels),
        "--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux_2_34_x86_64",
        "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
        "--platform", "manylinux2014_x86_64", "--platform", "any", "-r", str(req))
    site = root / "usr/lib/cocoon/site"
    run(sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--no-deps", "--no-compile",
        "--no-index", "--find-links", str(wheels), "-r", str(req))
    for junk in site.glob("*.dist-info/RECORD"):
        junk.unlink()  # absolute install paths would leak the build directory
    shutil.rmtree(site / "bin", ignore_errors=True)
    dest = root / "usr/lib/cocoon/agent"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi", "generate.py")
    shutil.copytree(ROOT_DIR / "agent", dest, ignore=skip)
    unit_dir = root / "etc/systemd/system"
    shutil.copy(ROOT_DIR / "image" / "cocoon-agent.service", unit_dir / "cocoon-agent.service")
    wants = unit_dir / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    link = wants / "cocoon-agent.service"
    if not link.is_symlink():
        link.symlink_to("../cocoon-agent.service")
    (root / "etc/modules-load.d").mkdir(exist_ok=True)
    (root / "etc/modules-load.d/cocoon.conf").write_text("\n".join(MODULES_LOAD) + "\n")
    # Nothing in that list is needed before READY: load it after the agent is up, not beside its start.
    dropin = root / "etc/systemd/system/systemd-modules-load.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "after-cocoon-agent.conf").write_text("[Unit]\nAfter=cocoon-agent.service\n")
    for unit in MASKED_UNITS:
        masked = unit_dir / unit  # no login prompt anywhere: the agent is the only way in
        if not masked.is_symlink():
            masked.symlink_to("/dev/null")
    generators = root / "etc/systemd/system-generators"
    generators.mkdir(parents=True, exist_ok=True)
    for name in MASKED_GENERATORS:
        if not (generators / name).is_symlink():
            (generators / name).symlink_to("/dev/null")
    from image.pause import IMAGE_PATH, make_pause_rootfs

    make_pause_rootfs(root / IMAGE_PATH, str(root / "usr/bin/busybox"))  # before finalize removes /usr/bin/busybox
    log(f"agent and its wheels installed under /usr/lib/cocoon, the pause rootfs at /{IMAGE_PATH}")


def finalize_tree(root: Path) -> None:
    for rel in (*PRUNE, "usr/sbin/getty", "usr/sbin/agetty", "usr/bin/login", "usr/bin/su", "usr/bin/busybox"):
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.is_symlink() or p.exists():  # a dangling symlink "does not exist" but is still there
            p.unlink()
    (root / "boot").mkdir(exist_ok=True)
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    # Hash-based .pyc files: valid whatever the filesystem's mtimes, identical across builds.
    for tree in [*sorted((root / "usr/lib").glob("python3*")), root / "usr/lib/cocoon"]:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                        "unchecked-hash", "-s", str(root), "-p", "/", str(tree)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (root / "etc/machine-id").write_text("")  # systemd makes a transient one at boot (the root is read-only)
    # The root is read-only; what systemd and the agent write lives in memory. Mount units rather than
    # fstab lines: no fstab generator to exec before systemd can load a unit.
    (root / "etc/fstab").write_text("")
    wants = root / "etc/systemd/system/local-fs.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for where, mode in (("/var", "0755"), ("/tmp", "1777")):
        name = f"{where.strip('/')}.mount"
        (root / "etc/systemd/system" / name).write_text(
            f"[Unit]\nDescription=memory for {where} (the root is read-only)\nDefaultDependencies=no\n"
            f"Conflicts=umount.target\nBefore=local-fs.target umount.target\n\n"
            f"[Mount]\nWhat=tmpfs\nWhere={where}\nType=tmpfs\nOptions=mode={mode},nosuid,nodev\n")
        link = wants / name
        if not link.is_symlink():
            link.symlink_to(f"../{name}")


def staged_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` into the (empty, tmpfs) ``dst`` creating entries in sorted order.

    mkfs.erofs numbers inodes in readdir order, and readdir order on the
    build filesystem depends on how entries happened to be created (parallel
    .pyc compilation, mkosi's copy order): two identical trees gave two
    different images. On a fresh tmpfs, readdir order follows creation
    order, so creating in sorted order makes it a function of the names.
    """
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else dst / rel
        entries = sorted(dirnames + filenames)
        for name in entries:
            s, d = Path(dirpath) / name, target / name
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
            elif s.is_dir():
                d.mkdir()
            else:
                shutil.copy2(s, d, follow_symlinks=False)
            st = os.lstat(s)
            os.lchown(d, st.st_uid, st.st_gid)
            if not s.is_symlink():
                os.chmod(d, st.st_mode & 0o7777)
        if rel == ".":
            os.chmod(dst, os.stat(src).st_mode & 0o7777)


def make_root_image(root: Path, out: Path, epoch: int, stage: Path) -> tuple[bytes, int]:
    from agent.verity import format_hash_area

    data = out / "root.erofs"
    fs_uuid = str(uuid.UUID(bytes=derive("erofs-uuid")[:16]))
    stage.mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", "size=4g,mode=0755", "cocoon-stage", str(stage))
    try:
        staged_copy(root, stage)
        run("mkfs.erofs", f"-T{epoch}", f"-U{fs_uuid}", "--all-root", "-x-1", "-zlz4hc", str(data), str(stage))
    finally:
        subprocess.run(["umount", str(stage)], check=False)
    size = data.stat().st_size
    if size % 4096:
        with data.open("ab") as f:
            f.write(bytes(4096 - size % 4096))
        size = data.stat().st_size
    root_hash, area = format_hash_area(str(data), derive("verity-salt"), derive("verity-uuid")[:16])
    img = out / "root.img"
    with img.open("wb") as f, data.open("rb") as src:
        shutil.copyfileobj(src, f, 1 << 20)
        f.write(area)
    data.unlink()
    return root_hash, size


OVMF = "/usr/share/ovmf/OVMF.fd"  # Debian's: TDX (carries TDVF metadata); no SNP kernel-hashes section


def measure(out: Path, cache: Path) -> None:
    """IGVM files and reference values that bind this image's kernel, initrd and command line.

    SNP: the AmdSev firmware (image/firmware.py) with the kernel-hashes table
    QEMU fills from -kernel/-initrd/-append, so the launch digest covers the
    verity root hash on the command line. The sim TEE's launches append
    ``cocoon.tee=sim`` to the command line, so they get their own file
    (reference-values-sim.json) and never match the real one. TDX: MRTD of
    Debian's OVMF (RTMRs are not predicted yet).
    """
    from image import firmware
    from launcher.qemu import SIM_CMDLINE

    if firmware.main(["--out", str(out), "--cache", str(cache)]) != 0:
        raise SystemExit("image: the SNP firmware could not be built (see above)")
    amdsev = out / firmware.OUTPUT
    cocoon = [sys.executable, "-m", "cocoon"]
    cmdline = (out / "cmdline").read_text().strip()
    boot = ["--kernel", str(out / "vmlinuz"), "--initrd", str(out / "initrd.img")]
    subprocess.run([*cocoon, "igvm", "build", "--platform", "snp", "--ovmf", str(amdsev), *boot, "--append", cmdline,
                    "--vcpus", "2", "--vcpu-type", "EPYC-Milan", "-o", str(out / "cocoon-snp.igvm")], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([*cocoon, "igvm", "build", "--platform", "tdx", "--ovmf", OVMF,
                    "-o", str(out / "cocoon-tdx.igvm")], check=True, stdout=subprocess.DEVNULL)
    for name, append in (("reference-values.json", cmdline), ("reference-values-sim.json", f"{cmdline} {SIM_CMDLINE}")):
        subprocess.run([*cocoon, "reference-values", "--ovmf", str(amdsev), *boot, "--append", append,
                        "--tdx-ovmf", OVMF, "--vcpus", "1,2,4,8", "--vcpu-types", "EPYC-Milan,EPYC-Genoa",
                        "-o", str(out / name)], check=True, stdout=subprocess.DEVNULL)
    inputs = {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
              for name in ("vmlinuz", "initrd.img", firmware.OUTPUT)}
    inputs["cmdline"] = hashlib.sha256(cmdline.encode()).hexdigest()
    inputs["note"] = ("SNP: bound by the AmdSev firmware's kernel-hashes table (QEMU sev-snp-guest kernel-hashes=on); "
                      "TDX: MRTD only, RTMR1/2 not predicted yet")
    (out / "boot-inputs.json").write_text(json.dumps(inputs, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT_DIR / "out"))
    ap.add_argument("--build-dir", default=str(ROOT_DIR / "build"))
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/cocoon"))
    ap.add_argument("--fresh", action="store_true", help="always run mkosi (clean build); default reuses "
                                                         "the saved tree when mkosi's inputs are unchanged")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    out, build, cache = Path(args.out), Path(args.build_dir), Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    epoch = source_date_epoch()
    mk = root_tree(build, epoch, cache, reuse=not args.fresh)
    root = mk / "root"
    kver = prune_modules(root)
    shutil.copy(root / "boot" / f"vmlinuz-{kver}", out / "vmlinuz")
    install_agent(root, cache)
    from image.initrd import build_initrd

    build_initrd(root, kver, out / "initrd.img", epoch)  # before finalize: it takes busybox from the tree
    finalize_tree(root)
    root_hash, hash_offset = make_root_image(root, out, epoch, build / "stage")
    cmdline = (f"console=ttyS0 quiet panic=-1 cocoon.roothash={root_hash.hex()} cocoon.hashoffset={hash_offset} "
               f"cocoon.verity.salt={derive('verity-salt').hex()} "
               "cocoon.listen=serial:///dev/virtio-ports/cocoon.agent")
    (out / "roothash").write_text(root_hash.hex() + "\n")
    (out / "cmdline").write_text(cmdline + "\n")
    manifest = json.loads((mk / "root.manifest").read_text())
    packages = sorted((p["name"], p["version"]) for p in manifest.get("packages", []))
    (out / "manifest.json").write_text(json.dumps(
        {"source_date_epoch": epoch, "kernel": kver,
         "packages": [{"name": n, "version": v} for n, v in packages],
         "python": (ROOT_DIR / "image" / "requirements.txt").read_text().split("\n")}, indent=1) + "\n")
    stats = {"root_image_bytes": (out / "root.img").stat().st_size, "erofs_bytes": hash_offset,
             "kernel_bytes": (out / "vmlinuz").stat().st_size, "build_seconds": round(time.monotonic() - t0, 1)}
    (out / "build-stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    measure(out, cache)
    stats["initrd_bytes"] = (out / "initrd.img").stat().st_size
    (out / "build-stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    for name in ("vmlinuz", "initrd.img", "root.img", "roothash", "cmdline", "manifest.json", "OVMF-AmdSev.fd",
                 "cocoon-snp.igvm", "cocoon-tdx.igvm", "reference-values.json", "reference-values-sim.json"):
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        log(f"{name:14} {digest}")
    log(f"root image {stats['root_image_bytes'] / 1e6:.1f} MB, built in {stats['build_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
