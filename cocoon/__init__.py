"""cocoon: the guest side of confidential containers, and the pipeline that measures it."""

import ast
from importlib.util import find_spec
from pathlib import Path


def _version() -> str:
    """agent/__init__.py's ``__version__``, the one version, read as setuptools reads it (the literal,
    without running the file): host tools that never need the agent do not import it."""
    spec = find_spec("agent")
    if spec is None or spec.origin is None:
        raise ImportError("cocoon needs the agent package beside it (agent/__init__.py holds the version)")
    for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__version__"]:
            return str(ast.literal_eval(node.value))
    raise ImportError(f"{spec.origin} sets no __version__")


__version__ = _version()
