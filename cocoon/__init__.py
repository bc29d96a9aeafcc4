"""cocoon: the guest side of confidential containers, and the pipeline that measures it."""

from agent import __version__

__all__ = ["__version__"]
