"""TEE providers behind one interface (``agent.tee.base.TeeProvider``).

``open_provider("auto")`` picks SNP or TDX from what the kernel exposes and
never picks ``sim``: simulation must be asked for by name (kernel command
line ``cocoon.tee=sim`` or ``--tee sim``), so a misconfigured real VM cannot
quietly fall back to a launcher-signed report.

The providers import their siblings by module path (``import
agent.tee.snp_report as snp_report``), never names from this package, so
the registry here imports them without an import cycle
(tests/test_import_graph.py).
"""

from __future__ import annotations

import contextlib
import os

from agent.errors import TeeError
from agent.tee.base import Evidence, TeeProvider
from agent.tee.configfs import DEFAULT_ROOT

__all__ = ["NAMES", "Evidence", "TeeProvider", "open_provider"]

NAMES = ("auto", "snp", "tdx", "sim", "az-snp-vtpm")


def _configfs_provider(root: str) -> str | None:
    """Which driver backs configfs-tsm, learnt from a probe directory (None when absent)."""
    if not os.path.isdir(root):
        return None
    probe = os.path.join(root, f"cocoon-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return None
    try:
        with open(os.path.join(probe, "provider"), "rb") as f:
            return f.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(probe)


def open_provider(name: str, *, sim_config: str | None = None, configfs_root: str = DEFAULT_ROOT) -> TeeProvider:
    """The provider ``name`` names; TeeError when it cannot exist on this machine."""
    # Import only the provider asked for: its parsers cost startup time.
    if name == "sim":
        from agent.tee.sim import DEFAULT_PATH, SimProvider

        return SimProvider(sim_config or DEFAULT_PATH)
    if name == "snp":
        from agent.tee.snp import SnpProvider

        return SnpProvider(configfs_root)
    if name == "tdx":
        from agent.tee.tdx import TdxProvider

        return TdxProvider(configfs_root)
    if name == "az-snp-vtpm":  # by name only: an Azure CVM's vTPM (agent/tee/az_vtpm.py)
        from agent.tee.az_vtpm import open_device

        return open_device()
    if name != "auto":
        raise TeeError(f"unknown TEE {name!r}; choose one of {', '.join(NAMES)}")
    provider = _configfs_provider(configfs_root)
    if provider == "sev_guest" or (provider is None and os.path.exists("/dev/sev-guest")):
        return open_provider("snp", configfs_root=configfs_root)
    if provider == "tdx_guest" or (provider is None and os.path.exists("/dev/tdx_guest")):
        return open_provider("tdx", configfs_root=configfs_root)
    raise TeeError(
        "no SEV-SNP or TDX guest interface found (configfs-tsm, /dev/sev-guest, /dev/tdx_guest); "
        "this is not a confidential VM, or its guest driver is not loaded. "
        "For a simulation, ask for it explicitly: cocoon.tee=sim"
    )
