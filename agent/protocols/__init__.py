"""Generated protobuf modules for Kata's agent protocol (and cocoon's own), see generate.py.

Importing this package first defers protobuf's pure-Python message module.
``descriptor_pool`` and ``internal.builder`` import
``google.protobuf.internal.python_message`` unconditionally, and it imports
``text_format`` (with the decoder, containers and pickle) and
``well_known_types`` (with calendar, datetime and locale): ~20 ms of the
agent's ~170 ms start, most of a second under emulation. With the upb backend
(what the image and the venv run) nothing calls into it: upb builds the
message classes itself. So, only when upb is the implementation, a stand-in
module takes its name: the first attribute anyone reads from it imports the
real module and answers from it, and the real one then replaces it
everywhere it is looked up by name. (``importlib.util.LazyLoader`` does the
same but costs ``importlib.util`` itself, ~0.15 s of a TCG boot.) Anything
that does use it (the pure-Python backend, a tool that asks for it) gets the
real module, just later.
"""

from __future__ import annotations

import sys
import types
from typing import Any

_PYTHON_MESSAGE = "google.protobuf.internal.python_message"


class _Deferred(types.ModuleType):
    """Stands in for python_message until something reads an attribute of it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_load_python_message(), name)


def _load_python_message() -> types.ModuleType:
    from google.protobuf import internal

    current = sys.modules.get(_PYTHON_MESSAGE)
    if current is not None and not isinstance(current, _Deferred):
        return current
    import importlib

    sys.modules.pop(_PYTHON_MESSAGE, None)
    real = importlib.import_module(_PYTHON_MESSAGE)
    internal.python_message = real  # type: ignore[attr-defined]
    return real


def _defer_python_message() -> None:
    if _PYTHON_MESSAGE in sys.modules:
        return
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() != "upb":
        return
    stand_in = _Deferred(_PYTHON_MESSAGE, "protobuf's pure-Python message module, imported on first use")
    sys.modules[_PYTHON_MESSAGE] = stand_in
    # Bound on its package too: protobuf imports it as ``from google.protobuf.internal import
    # python_message``, which reads the package attribute once the name is in sys.modules.
    from google.protobuf import internal

    internal.python_message = stand_in  # type: ignore[attr-defined]


_defer_python_message()
