"""The verifier reads JSON from outside with the guest's strict reader (agent/strictjson.py): one reading of a
document for every party, guest and host (a duplicate key or a non-JSON constant is refused everywhere)."""

from agent.strictjson import DECODER, loads, name

__all__ = ["DECODER", "loads", "name"]
