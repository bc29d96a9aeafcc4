"""cocoon: the guest side of confidential containers, and the pipeline that measures it."""

__version__ = "0.1.0"
