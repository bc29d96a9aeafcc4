"""Policy: Kata-compatible Rego evaluation (engine) and its state patches (jsonpatch)."""

from agent.policy.engine import Decision, Policy

__all__ = ["Decision", "Policy"]
