"""The guest image: built once per test session from this checkout (`make image` does the same).

Checks: every output exists; the dm-verity root hash on the command line verifies the root image
(veritysetup); one flipped byte fails verification; the root tree has no package manager, login
or compiler; the root image is at most 150 MB; and, with COCOON_REPRO=1 (CI sets it), a second
clean build gives identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mkosi") or os.environ.get("COCOON_SKIP_IMAGE") == "1",
    reason="needs root and mkosi (make setup); COCOON_SKIP_IMAGE=1 skips")
OUTPUTS = ("vmlinuz", "initrd.img", "root.img", "roothash", "cmdline", "manifest.json", "OVMF-AmdSev.fd",
           "cocoon-snp.igvm", "cocoon-tdx.igvm", "reference-values.json", "reference-values-sim.json",
           "boot-inputs.json", "build-stats.json")
FORBIDDEN = re.compile(r"^usr/(s?bin)/(apt|apt-get|dpkg|gcc.*|cc|c\+\+|g\+\+.*|make|login|su|sshd|ssh|getty|agetty|"
                       r"busybox)$")


def build(where: Path) -> Path:
    out = where / "out"
    subprocess.run([sys.executable, "-m", "image.build", "--fresh", "--out", str(out), "--build-dir", str(where)],
                   cwd=ROOT, check=True)
    return out


@pytest.fixture(scope="session")
def image() -> Path:
    where = ROOT / "build" / "test-image"
    shutil.rmtree(where, ignore_errors=True)
    return build(where)


def test_outputs_and_size(image: Path) -> None:
    for name in OUTPUTS:
        assert (image / name).stat().st_size > 0, name
    stats = json.loads((image / "build-stats.json").read_text())
    print(f"root image {stats['root_image_bytes'] / 1e6:.1f} MB, built in {stats['build_seconds']} s")
    assert stats["root_image_bytes"] <= 150e6
    manifest = json.loads((image / "manifest.json").read_text())
    names = {p["name"] for p in manifest["packages"]}
    assert {"systemd", "python3", "crun", "cryptsetup-bin"} <= names
    assert manifest["kernel"].startswith("6.12")


def test_cmdline_root_hash_verifies_the_root_image(image: Path, tmp_path: Path) -> None:
    cmdline = (image / "cmdline").read_text()
    root_hash = re.search(r"cocoon.roothash=([0-9a-f]{64})", cmdline).group(1)  # type: ignore[union-attr]
    offset = re.search(r"cocoon.hashoffset=(\d+)", cmdline).group(1)  # type: ignore[union-attr]
    assert root_hash == (image / "roothash").read_text().strip()
    img = image / "root.img"
    # The initrd builds the dm table from the command line: its salt must be the superblock's.
    salt = re.search(r"cocoon.verity.salt=([0-9a-f]+)", cmdline).group(1)  # type: ignore[union-attr]
    from agent.verity import parse_superblock

    with img.open("rb") as f:
        f.seek(int(offset))
        sb = parse_superblock(f.read(512))
    assert sb.salt.hex() == salt and sb.data_blocks * 4096 == int(offset)
    ok = subprocess.run(["veritysetup", "verify", str(img), str(img), root_hash, f"--hash-offset={offset}"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.img"
    blob = bytearray(img.read_bytes())
    blob[int(offset) // 2] ^= 0x01
    bad.write_bytes(bytes(blob))
    fail = subprocess.run(["veritysetup", "verify", str(bad), str(bad), root_hash, f"--hash-offset={offset}"],
                          capture_output=True, text=True)
    assert fail.returncode != 0


def test_no_package_manager_login_or_compiler(image: Path) -> None:
    tree = image.parent / "mkosi" / "root"  # the tree the erofs image was made from
    found = [str(p.relative_to(tree)) for p in tree.rglob("*")
             if FORBIDDEN.match(str(p.relative_to(tree)))]
    assert found == []
    units = tree / "etc/systemd/system"
    assert os.readlink(units / "getty.target") == "/dev/null"
    assert os.readlink(units / "systemd-journald.service") == "/dev/null"  # the agent writes to the console
    # /var and /tmp are memory, from mount units (no fstab generator to run before systemd loads units).
    for name in ("var.mount", "tmp.mount"):
        assert "Type=tmpfs" in (units / name).read_text() and (units / "local-fs.target.wants" / name).is_symlink()
    assert os.readlink(tree / "etc/systemd/system-generators/systemd-fstab-generator") == "/dev/null"
    # No debugfs/tracefs in a confidential guest, and no mount(8) forks ahead of the agent for mounts
    # nothing uses (PID 1 starts mount units before services).
    for name in ("sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-fs-fuse-connections.mount",
                 "dev-hugepages.mount", "dev-mqueue.mount"):
        assert os.readlink(units / name) == "/dev/null", name
    assert (units / "multi-user.target.wants" / "cocoon-agent.service").is_symlink()
    assert (tree / "usr/lib/cocoon/agent/daemon.py").exists()
    assert (tree / "usr/lib/cocoon/site/regorus").is_dir()


def test_the_pause_rootfs_is_in_the_measured_root(image: Path) -> None:
    """The sandbox container's rootfs comes from the image (agent --pause-rootfs default), not the host."""
    from agent.containers import PAUSE_ROOTFS
    from image.pause import IMAGE_PATH, PAUSE

    tree = image.parent / "mkosi" / "root"
    pause = tree / IMAGE_PATH
    assert "/" + IMAGE_PATH == PAUSE_ROOTFS
    assert (pause / "pause").read_text() == PAUSE and os.stat(pause / "pause").st_mode & 0o777 == 0o755
    busybox = pause / "bin" / "busybox"
    assert busybox.is_file() and not busybox.is_symlink() and os.access(busybox, os.X_OK)
    elf = busybox.read_bytes()
    phoff, phentsize, phnum = int.from_bytes(elf[0x20:0x28], "little"), elf[0x36], elf[0x38]
    types = [int.from_bytes(elf[phoff + i * phentsize:phoff + i * phentsize + 4], "little") for i in range(phnum)]
    assert elf[:4] == b"\x7fELF" and 3 not in types  # no PT_INTERP: static, needs nothing else in the tree
    assert sorted(p.name for p in pause.iterdir()) == ["bin", "pause"]
    assert all(os.readlink(pause / "bin" / a) == "busybox" for a in ("sh", "sleep"))


def test_without_udev_every_shipped_module_is_loaded_by_name(image: Path) -> None:
    """No udev loads drivers by modalias in this image: whatever the initrd does not load, modules-load.d must."""
    from image import build, initrd

    tree = image.parent / "mkosi" / "root"
    units = tree / "etc/systemd/system"
    assert os.readlink(units / "systemd-udevd.service") == "/dev/null"
    listed = set((tree / "etc/modules-load.d/cocoon.conf").read_text().split())
    # Drivers bound to a device by modalias; the rest (veth, bridge, tun, overlay, ...) the kernel
    # requests itself when a feature is first used, and vsock/tsm come as dependencies.
    by_modalias = {"qemu_fw_cfg", "sev_guest", "tdx_guest", "vmw_vsock_virtio_transport", "virtio_net"}
    # What the agent needs before it binds comes from the initrd (the agent does not wait for
    # systemd-modules-load); the rest from modules-load.d; each module from exactly one of them.
    early = set(initrd.MODULES) | set(initrd.OPTIONAL_MODULES)
    assert by_modalias <= listed | early and not listed & early
    assert {"qemu_fw_cfg", "sev_guest", "tdx_guest", "vmw_vsock_virtio_transport", "configfs"} <= early
    assert by_modalias <= set(build.MODULES)
    unit = (units / "cocoon-agent.service").read_text()
    after = " ".join(line for line in unit.splitlines() if line.startswith("After="))
    assert "sys-kernel-config.mount" in after and "systemd-modules-load" not in after
    # ...and what modules-load.d lists waits until the agent is up (none of it is needed before READY).
    dropin = units / "systemd-modules-load.service.d" / "after-cocoon-agent.conf"
    assert "After=cocoon-agent.service" in dropin.read_text()


def test_every_shared_object_the_agent_loads_finds_its_libraries(image: Path) -> None:
    """Each extension module under /usr/lib/cocoon resolves its DT_NEEDED libraries inside the image.

    A wheel's C++ extension without libstdc++ in the image does not fail loudly: protobuf silently
    falls back to pure Python (seconds slower under TCG) and gRPC does not load at all."""
    tree = image.parent / "mkosi" / "root"
    objects = sorted(p for p in (tree / "usr/lib/cocoon").rglob("*.so") if p.is_file())
    assert any(p.name.startswith("_message") for p in objects) and any("regorus" in p.name for p in objects)
    for path in objects:
        inside = "/" + str(path.relative_to(tree))
        out = subprocess.run(["chroot", str(tree), "/usr/bin/ldd", inside], capture_output=True, text=True)
        assert out.returncode == 0 and "not found" not in out.stdout, f"{inside}:\n{out.stdout}{out.stderr}"
    probe = ("import sys; sys.path[:0] = ['/usr/lib/cocoon/site']; "
             "from google.protobuf.internal import api_implementation; print(api_implementation.Type())")
    out = subprocess.run(["chroot", str(tree), "/usr/bin/python3", "-S", "-c", probe], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "upb"


def newc_files(archive: bytes) -> dict[str, bytes]:
    """The members of a newc cpio archive (read here independently of image/initrd.py's writer)."""
    files, at = {}, 0
    while archive[at:at + 6] == b"070701":
        fields = [int(archive[at + 6 + 8 * i:at + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = archive[at + 110:at + 110 + namesize - 1].decode()
        data_at = at + 110 + namesize + (-(110 + namesize) % 4)
        files[name] = archive[data_at:data_at + size]
        at = data_at + size + (-size % 4)
        if name == "TRAILER!!!":
            break
    return files


def test_initrd_holds_what_opens_the_root(image: Path) -> None:
    import gzip

    archive = gzip.decompress((image / "initrd.img").read_bytes())
    names = set(re.findall(rb"070701[0-9a-f]{104}([^\0]+)\0", archive))
    assert {b"init", b"bin/busybox", b"usr/sbin/dmsetup", b"lib/modules/dm_verity.ko",
            b"lib/modules/erofs.ko", b"etc/modules.order", b"lib/modules/qemu_fw_cfg.ko",
            b"lib/modules/vmw_vsock_virtio_transport.ko", b"lib/modules/sev_guest.ko", b"lib/modules/tdx_guest.ko",
            b"etc/modules.optional", b"etc/modules.agent", b"etc/prefetch.list"} <= names
    assert b"dmsetup create root --readonly" in archive and b"poweroff -f" in archive
    assert b"usr/sbin/veritysetup" not in names  # dmsetup with a table: no libcryptsetup/libcrypto to load
    # The root's modules in the foreground; the agent's and the optional ones on the other vCPU, each
    # module in one list only, and the boot stops (fails closed) unless the agent's all loaded.
    files = newc_files(archive)
    lists = {n: files[f"etc/modules.{n}"].decode().split() for n in ("order", "agent", "optional")}
    assert {"dm_verity", "erofs", "virtio_blk"} <= set(lists["order"])
    assert {"qemu_fw_cfg", "configfs", "vsock", "vmw_vsock_virtio_transport"} <= set(lists["agent"])
    assert lists["optional"] == ["tsm", "sev_guest", "tdx_guest"]
    every = [m for listing in lists.values() for m in listing]
    assert len(every) == len(set(every))
    init = files["init"].decode()
    assert init.index("load /etc/modules.agent") < init.index("load /etc/modules.order")
    assert init.index('wait $agent_modules || fail') < init.index("exec switch_root")
    # configfs is mounted before switch_root and the API filesystems move (systemd adopts them), so the
    # agent's After=sys-kernel-config.mount holds without PID 1 forking mount(8) first.
    assert init.index("mount -t configfs configfs /sys/kernel/config") < init.index("exec switch_root")
    assert 'for fs in /dev /run /proc /sys; do mount --move "$fs" "/sysroot$fs"' in init
    assert "umount" not in init
    # The read-ahead list: systemd first, then the interpreter, then the stdlib the agent imports, all in the root.
    listed = newc_files(archive)["etc/prefetch.list"].decode().split()
    tree = image.parent / "mkosi" / "root"
    assert listed[0] == "usr/lib/systemd/systemd" and "usr/bin/python3.11" in listed
    assert any(p.endswith("tomllib/__pycache__/_parser.cpython-311.pyc") for p in listed)
    assert all((tree / p).is_file() for p in listed), [p for p in listed if not (tree / p).is_file()]


def test_background_modules_may_not_depend_on_the_roots(tmp_path: Path) -> None:
    from image.initrd import check_background_modules

    mdir = tmp_path / "usr/lib/modules/6.0"
    mdir.mkdir(parents=True)
    (mdir / "modules.dep").write_text("kernel/dm-mod.ko.xz:\nkernel/dm-verity.ko.xz: kernel/dm-mod.ko.xz\n"
                                      "kernel/vsock.ko.xz:\nkernel/dm-crypt.ko.xz: kernel/dm-mod.ko.xz\n")
    check_background_modules(tmp_path, "6.0", ("dm_verity",), ("vsock",))  # disjoint closures: fine
    with pytest.raises(SystemExit, match=r"depend on the root's \(dm_mod\)"):
        check_background_modules(tmp_path, "6.0", ("dm_verity",), ("vsock", "dm_crypt"))


def test_initrd_starts_the_warmup_and_it_runs_in_the_image(image: Path) -> None:
    """The initrd runs agent/warmup.py from the verity root before switch_root; with the image's own
    interpreter and packages it must get all the way to ready (else it warms nothing, silently)."""
    import gzip

    files = newc_files(gzip.decompress((image / "initrd.img").read_bytes()))
    init = files["init"].decode()
    line = next(ln for ln in init.splitlines() if "chroot /sysroot" in ln)
    assert "/usr/bin/python3 -S -P" in line and init.index(line) < init.index("exec switch_root")
    assert "/usr/lib/cocoon/agent/warmup.py >/dev/console 2>&1) &" in init
    assert files["bin/chroot"] == b"busybox"
    tree = image.parent / "mkosi" / "root"
    assert line.startswith("(PYTHONPATH=/usr/lib/cocoon:/usr/lib/cocoon/site chroot")  # the unit's, as the agent runs
    env = {"PATH": "/usr/bin", "PYTHONPATH": "/usr/lib/cocoon:/usr/lib/cocoon/site", "PYTHONDONTWRITEBYTECODE": "1"}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    out = subprocess.run([chroot, str(tree), "/usr/bin/python3", "-S", "-P", "/usr/lib/cocoon/agent/warmup.py"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and re.fullmatch(r"cocoon-warmup: ready in \d+ ms\n", out.stdout), out


@pytest.mark.skipif(os.environ.get("COCOON_REPRO") != "1", reason="set COCOON_REPRO=1 for a second clean build")
def test_second_clean_build_is_identical(image: Path) -> None:
    where = ROOT / "build" / "test-image-again"
    shutil.rmtree(where, ignore_errors=True)
    again = build(where)
    for name in OUTPUTS[:-1]:
        a = hashlib.sha256((image / name).read_bytes()).hexdigest()
        b = hashlib.sha256((again / name).read_bytes()).hexdigest()
        assert a == b, f"{name} differs between two clean builds"


def test_compare_names_the_first_differing_file(tmp_path: Path) -> None:
    from image.compare import first_difference

    for side in ("a", "b"):
        (tmp_path / side / "etc").mkdir(parents=True)
        (tmp_path / side / "etc" / "same").write_text("x")
        (tmp_path / side / "usr").mkdir()
    (tmp_path / "a" / "usr" / "f").write_text("1")
    (tmp_path / "b" / "usr" / "f").write_text("2")
    assert first_difference(tmp_path / "a", tmp_path / "a") is None
    assert str(first_difference(tmp_path / "a", tmp_path / "b")).startswith("usr/f:")


def test_agent_only_rebuild_reuses_the_tree_and_gives_the_same_image(image: Path) -> None:
    """Without --fresh, a build whose mkosi inputs did not change skips mkosi (the fixture's clean build
    saved its tree) and must still produce the very same outputs."""
    where = ROOT / "build" / "test-image-reuse"
    shutil.rmtree(where, ignore_errors=True)
    out = where / "out"
    result = subprocess.run([sys.executable, "-m", "image.build", "--out", str(out), "--build-dir", str(where)],
                            cwd=ROOT, check=True, capture_output=True, text=True)
    assert "reusing the mkosi tree" in result.stderr
    for name in ("vmlinuz", "initrd.img", "root.img", "cmdline", "manifest.json", "reference-values.json",
                 "reference-values-sim.json", "cocoon-snp.igvm"):
        assert (out / name).read_bytes() == (image / name).read_bytes(), name
    stats = json.loads((out / "build-stats.json").read_text())
    print(f"agent-only rebuild: {stats['build_seconds']} s")


def test_snp_reference_value_binds_this_kernel_initrd_and_cmdline(image: Path) -> None:
    """sev-snp-measure, the reference values and the image's SNP IGVM agree on the launch digest of the
    AmdSev firmware with this image's kernel, initrd and command line (verity root hash included)."""
    from sevsnpmeasure import guest
    from sevsnpmeasure import vcpu_types as ssm_vcpu
    from sevsnpmeasure.sev_mode import SevMode

    cmdline = (image / "cmdline").read_text().strip()
    oracle = guest.calc_launch_digest(SevMode.SEV_SNP, 2, ssm_vcpu.CPU_SIGS["EPYC-Milan"],
                                      str(image / "OVMF-AmdSev.fd"), str(image / "vmlinuz"),
                                      str(image / "initrd.img"), cmdline, 0x1).hex()
    refs = json.loads((image / "reference-values.json").read_text())
    listed = {(e["vcpus"], e["vcpu_type"]): e["measurement"] for e in refs["snp"]["measurements"]}
    assert listed[(2, "EPYC-Milan")] == oracle
    assert refs["inputs"]["cmdline"] == cmdline
    packed = json.loads(subprocess.run([sys.executable, "-m", "cocoon", "measure", "igvm",
                                        str(image / "cocoon-snp.igvm"), "--zero-pages", "native", "--json"],
                                       check=True, capture_output=True, text=True).stdout)
    assert packed["measurement"] == oracle
    sim = json.loads((image / "reference-values-sim.json").read_text())
    assert sim["inputs"]["cmdline"] == f"{cmdline} cocoon.tee=sim"
    assert oracle not in {e["measurement"] for e in sim["snp"]["measurements"]}
    assert refs["tdx"]["rtmr"]["rtmr1"] and refs["tdx"]["rtmr"]["rtmr2"]
