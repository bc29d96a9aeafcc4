"""The containerd shim (issue 23): runs each pod in its own confidential VM under a real engine and
speaks Kata's agent protocol to the agent inside it.

Runs on the host, started by containerd. May import launcher (VM start, the agent client), generator
(the layer converter), agent.protocols and verifier; agent/ never imports it.
"""
