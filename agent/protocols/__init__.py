"""Generated protobuf modules for Kata's agent protocol (and cocoon's own), see generate.py.

Importing this package first defers protobuf's pure-Python message module.
``descriptor_pool`` and ``internal.builder`` import
``google.protobuf.internal.python_message`` unconditionally, and it imports
``text_format`` (with the decoder, containers and pickle) and
``well_known_types`` (with calendar, datetime and locale): ~20 ms of the
agent's ~170 ms start, most of a second under emulation. With the upb backend
(what the image and the venv run) nothing calls into it: upb builds the
message classes itself. So, only when upb is the implementation, the module
is registered with ``importlib.util.LazyLoader`` and runs on first attribute
access, if ever. Anything that does use it (the pure-Python backend, a
tool that asks for it) gets the real module, just later.
"""

from __future__ import annotations

import sys

_PYTHON_MESSAGE = "google.protobuf.internal.python_message"


def _defer_python_message() -> None:
    if _PYTHON_MESSAGE in sys.modules:
        return
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() != "upb":
        return
    import importlib.util

    spec = importlib.util.find_spec(_PYTHON_MESSAGE)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PYTHON_MESSAGE] = module
    spec.loader.exec_module(module)
    # Bound on its package too: protobuf imports it as ``from google.protobuf.internal import
    # python_message``, which then reads the package attribute instead of re-importing the name (a
    # re-import looks at the module's __spec__, and on 3.11 any attribute access runs a lazy module).
    from google.protobuf import internal

    internal.python_message = module  # type: ignore[attr-defined]


_defer_python_message()
