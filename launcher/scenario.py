"""The end-to-end scenario under QEMU with the sim TEE: what the demo runs and the QEMU tests assert.

A Session owns one work directory: the sim ARK/ASK/VCEK chain (what a
relying party is told to trust with ``--trust-sim``), the demo layer, the
initdata disk and the sim PSP document. The launcher gives the sim PSP the
SNP launch measurement that ``reference-values.json`` lists for this image
and vCPU configuration, and the initdata digest as HOSTDATA: exactly what
SEV-SNP hardware would report for that launch. Every other piece (kernel,
initrd, verity root, systemd, agent, crun, dm-verity layers) is the real one.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import initdata as initdata_mod
from agent.rpc import Code, RpcError
from launcher import pod, pvh
from launcher.qemu import Image, LaunchError, Machine
from launcher.vm import Vm

VCPUS = 2
VCPU_TYPE = "EPYC-Milan"


@dataclass
class Step:
    """One thing the scenario showed, with how long it took."""

    name: str
    ok: bool
    detail: str
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.name, "ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 2),
                **({"data": self.data} if self.data else {})}


class Session:
    def __init__(self, image: Image, workdir: Path, chaos: bool = False, accel: str = "tcg",
                 chain: Any = None) -> None:
        """``chain``: a sim SimChain to share with other sessions (the machines of one deployment, which a
        relying party trusts under one root, as real ones share AMD's); by default each session makes its own."""
        self.image = image
        self.chain = chain
        self.work = workdir
        self.chaos = chaos
        self.accel = accel
        self.work.mkdir(parents=True, exist_ok=True)
        self.prepared = False
        self.pvh_kernel: Path | None = None
        self.boot_path = "bzImage through SeaBIOS"

    # --- what the launcher prepares -------------------------------------------------------------
    def prepare(self) -> dict[str, Any]:
        """Chain, layer, initdata, sim PSP document; returns what was measured and bound."""
        self.layer = pod.build_layer(self.work / "layer0.img")
        self.layers = [self.layer.path]
        return {**self.bind(pod.initdata_document(self.layer, self.chaos)), "layer_root_hash": self.layer.root_hash}

    def prepare_pod(self, document: bytes, layers: list[Path]) -> dict[str, Any]:
        """The same for a pod of one's own (``cocoon generate`` output): its initdata document and layer files,
        attached in this order as ``/dev/disk/by-id/virtio-layer0``, ``-layer1``, ..."""
        self.layers = list(layers)
        return self.bind(document)

    def bind(self, document: bytes) -> dict[str, Any]:
        from launcher.simca import make_chain, make_config

        chain = self.chain if self.chain is not None else make_chain()
        self.trust = self.work / "sim-trust.pem"
        self.trust.write_bytes(chain.trust_pem)
        self.document = document
        self.initdata = self.work / "initdata.img"
        self.initdata.write_bytes(initdata_mod.encode_block(self.document))
        parsed = initdata_mod.read_path(str(self.initdata))
        self.digest = parsed.digest
        self.measurement = self.image.snp_measurement(VCPUS, VCPU_TYPE, sim=True)
        self.sim_config = self.work / "sim.json"
        self.sim_config.write_text(make_config(chain, self.measurement, parsed.bound(32)).to_json())
        self.references = self.image.reference_values(sim=True)
        self.pvh_kernel, self.boot_path = pvh.sim_kernel(self.image.kernel)
        self.prepared = True
        return {"measurement": self.measurement.hex(), "host_data": parsed.bound(32).hex(),
                "initdata_algorithm": parsed.algorithm, "cmdline": self.image.cmdline, "kernel_boot": self.boot_path}

    def machine(self, name: str, initdata: Path | None = None, root_image: Path | None = None,
                tee: str = "sim") -> Machine:
        m = Machine(self.image, platform="sim", initdata=initdata or self.initdata, layers=list(self.layers),
                    agent_socket=self.work / f"{name}.sock", console_log=self.work / f"{name}.console.log",
                    sim_config=self.sim_config, vcpus=VCPUS, vcpu_type=VCPU_TYPE, accel=self.accel,
                    root_image=root_image, pvh_kernel=self.pvh_kernel)
        if tee != "sim":  # e.g. "auto": the agent must never fall back to sim by itself
            m.extra_cmdline = f"cocoon.tee={tee}"  # the last cocoon.tee= wins
        return m

    def boot(self, name: str, **kw: Any) -> Vm:
        return Vm(self.machine(name, **kw)).start()

    def tampered_initdata(self) -> Path:
        """The initdata disk with one byte of the policy document changed (the PSP still has the old digest)."""
        doc = bytearray(self.document)
        at = doc.index(b"cocoon demo pod")
        doc[at] ^= 0x20  # 'c' -> 'C': still valid TOML and Rego, a different digest
        path = self.work / "initdata-tampered.img"
        path.write_bytes(initdata_mod.encode_block(bytes(doc)))
        return path

    def flipped_root(self) -> Path:
        """A copy of root.img with one bit flipped in the erofs superblock, which the initrd must read."""
        path = self.work / "root-flipped.img"
        shutil.copyfile(self.image.root, path)
        with path.open("r+b") as f:
            f.seek(1024 + 8)  # erofs superblock (offset 1024): its checksum field
            b = f.read(1)
            f.seek(1024 + 8)
            f.write(bytes([b[0] ^ 0x01]))
        return path

    # --- the steps ------------------------------------------------------------------------------
    def attest(self, vm: Vm) -> tuple[Any, bytes]:
        """Fresh nonce -> GetEvidence -> verify against reference-values.json and the initdata digest."""
        from verifier.api import verify

        nonce = os.urandom(32)
        ev = vm.call("GetEvidence", {"nonce": base64.b64encode(nonce).decode()})
        result = verify(ev.kind, ev.report, ev.aux, self.references, initdata_digest=self.digest, nonce=nonce,
                        trust_sim=str(self.trust), tee=ev.tee)
        return result, nonce

    @staticmethod
    def read_stream(vm: Vm, rpc: str, cid: str, exec_id: str, until: bytes | None = None,
                    timeout: float = 60) -> bytes:
        """ReadStdout/ReadStderr until EOF (or until ``until`` appeared)."""
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = {"container_id": cid, "exec_id": exec_id, "len": 65536}
                chunk: bytes = vm.call(rpc, body, timeout=timeout).data
                out += chunk
            except RpcError as exc:
                if "EOF" in exc.message:
                    return out
                raise
            if until is not None and until in out:
                return out
        raise LaunchError(f"{rpc} of {cid}/{exec_id}: no EOF within {timeout:.0f} s (got {out!r})")

    def run_container(self, vm: Vm, cid: str, args: list[str], **kw: Any) -> tuple[bytes, int]:
        vm.call("CreateContainer", pod.container_request(cid, args, self.layer, **kw), timeout=120)
        vm.call("StartContainer", {"container_id": cid}, timeout=60)
        out = self.read_stream(vm, "ReadStdout", cid, cid)
        status = vm.call("WaitProcess", {"container_id": cid, "exec_id": cid}, timeout=60).status
        return out, status


def denied(call: Any) -> RpcError:
    """The RpcError a call that must be refused raised (LaunchError if it was allowed)."""
    try:
        call()
    except RpcError as exc:
        if exc.code != Code.PERMISSION_DENIED:
            raise
        return exc
    raise LaunchError("a request that must be denied was allowed")
