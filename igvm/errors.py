"""Error types of the measurement library.

Every parser here raises one of these, never a bare ``struct.error`` or
``IndexError``: callers (the CLI, the verifier, the agent) must be able to
tell "this input is malformed" apart from "cocoon has a bug".
"""

from __future__ import annotations


class MeasureError(Exception):
    """Base class: the input cannot be measured, and the message says why."""


class IgvmError(MeasureError):
    """A malformed IGVM file; ``offset`` is the byte offset of the fault."""

    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        self.reason = message
        super().__init__(f"IGVM file invalid at offset {offset:#x}: {message}")


class FirmwareError(MeasureError):
    """A firmware image whose footer table or metadata is malformed."""


class InputError(MeasureError):
    """A parameter that cannot be right (unknown vCPU type, bad hex, ...)."""
