"""cocoon: the guest side of confidential containers, and the pipeline that measures it."""

from importlib.util import find_spec
from pathlib import Path


def _version() -> str:
    """agent/VERSION, the one version (agent/__init__.py reads it too), found without importing the agent."""
    spec = find_spec("agent")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("cocoon needs the agent package beside it (agent/VERSION holds the version)")
    return (Path(next(iter(spec.submodule_search_locations))) / "VERSION").read_text(encoding="ascii").strip()


__version__ = _version()
