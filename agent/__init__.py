"""The cocoon guest agent (Kata AgentService over ttRPC/gRPC, policy-bound to the TEE report).

``__version__`` is cocoon's one version: the image copies agent/ alone (no dist metadata), so the guest
reads it here; pyproject.toml (setuptools' attr) and cocoon/__init__.py read this literal statically.
"""

__version__ = "0.1.0"
