"""The cocoon guest agent (Kata AgentService over ttRPC/gRPC, policy-bound to the TEE report).

``__version__`` is cocoon's one version, written in agent/VERSION: the image copies agent/ alone (no
dist metadata), so the guest reads it there, and pyproject.toml and cocoon/__init__.py read the same
file (cocoon without importing the agent: host tools that do not need it stay light).
"""

import os

with open(os.path.join(os.path.dirname(__file__), "VERSION"), encoding="ascii") as _f:
    __version__ = _f.read().strip()
