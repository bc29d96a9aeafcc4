"""Error types of the agent, one per subsystem.

Every parser and every TEE call raises one of these, never a bare
``ValueError``/``OSError``/``KeyError``: the startup sequence turns any of
them into deny-all with the message as the reason, and the message is what
an operator reads in ``systemctl status``, so it must say what to fix.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent reports as a reason."""


class TeeError(AgentError):
    """The TEE could not produce a report (device missing, kernel refused, race)."""


class ReportError(AgentError):
    """A report, quote or certificate table is malformed or does not verify."""


class InitdataError(AgentError):
    """The initdata device or document is missing or malformed."""


class PolicyError(AgentError):
    """The policy does not load, or evaluating it failed."""
