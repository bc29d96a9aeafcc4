"""The cocoon guest agent (Kata AgentService over ttRPC/gRPC, policy-bound to the TEE report).

Built by the agent issues; the foundation only reserves the package.
"""
