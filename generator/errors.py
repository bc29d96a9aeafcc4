"""The generator's one error type: every bad input ends here, with a message naming where it came from."""

from __future__ import annotations


class GenerateError(Exception):
    """Input ``cocoon generate`` cannot turn into a pod: the message names the document and field (or the image,
    blob and registry) and what is wrong, so the user can fix it without a traceback."""


class ImageError(GenerateError):
    """An image could not be found, fetched or trusted (registry errors, digest mismatches, media types)."""


class LayerError(GenerateError):
    """A layer could not be converted (unsafe paths, device nodes, a tar that does not parse, tool failures)."""


class PolicyGenError(GenerateError):
    """A pod spec asks for something the generated policy cannot or will not admit (hostPath, privileged, ...)."""
