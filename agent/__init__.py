"""The cocoon guest agent (Kata AgentService over ttRPC/gRPC, policy-bound to the TEE report).

``__version__`` is cocoon's one version: the image copies agent/ alone (no dist metadata), so the guest
reads it here, and pyproject.toml, cocoon/__init__.py and the host tools read it from here too.
"""

__version__ = "0.1.0"
