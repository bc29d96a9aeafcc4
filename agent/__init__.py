"""The cocoon guest agent (Kata AgentService over ttRPC/gRPC, policy-bound to the TEE report).

``__version__`` is cocoon's one version, written in agent/VERSION: the image copies agent/ alone (no
dist metadata), so the guest reads it there, when first asked (a Version or GetGuestDetails
RPC: nothing on the way to READY opens a data file), and pyproject.toml and cocoon/__init__.py read the same
file (cocoon without importing the agent: host tools that do not need it stay light).
"""

import os


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    with open(os.path.join(os.path.dirname(__file__), "VERSION"), encoding="ascii") as f:
        version = f.read().strip()
    globals()["__version__"] = version
    return version
