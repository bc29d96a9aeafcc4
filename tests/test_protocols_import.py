"""agent.protocols defers protobuf's pure-Python message module under upb, and nothing breaks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from agent.protocols import agent_pb2
from agent.service import Agent
from google.protobuf.internal import api_implementation
m = agent_pb2.CreateContainerRequest(container_id="c1", exec_id="e1")
assert agent_pb2.CreateContainerRequest.FromString(m.SerializeToString()) == m
print(api_implementation.Type(), "google.protobuf.text_format" in sys.modules)
print(str(m).replace(chr(10), " ").strip())
from google.protobuf.internal import python_message
print(python_message.GeneratedProtocolMessageType.__name__)
"""


def probe(**env: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_upb_start_does_not_load_text_format_yet_everything_still_works() -> None:
    kind_loaded, text, name = probe()
    assert kind_loaded == "upb False"  # the agent's import path left text_format (and python_message) alone
    assert text == 'container_id: "c1" exec_id: "e1"'  # text format still there when asked for
    assert name == "GeneratedProtocolMessageType"  # and the deferred module loads on first use


def test_the_pure_python_backend_is_not_deferred() -> None:
    kind_loaded, text, name = probe(PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    assert kind_loaded == "python True"
    assert text == 'container_id: "c1" exec_id: "e1"' and name == "GeneratedProtocolMessageType"
