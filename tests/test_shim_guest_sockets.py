"""The shim's part of a pod's way to the guest's attestation-agent and data-hub sockets.

containerd writes a read-only hostPath volume as a bind mount with options ``rbind, rprivate, ro`` (its CRI
plugin's WithMounts), after creating a directory of that name on the node if the node had none. A source that
is exactly one of the guest's socket paths (agent/guest_components.py CONTAINER_SOURCES) must reach the agent
as it is, whatever the node has there, and the policy ``cocoon generate`` writes for the pod must admit the
request the shim builds from it (the real rules on the agent's engine). Every other bind source, including
other spellings of those paths, is still the node's: copied when the node has it, dropped when not.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_generate_guest_sockets import RO, asking
from test_generate_policy import DEVICES, IMAGES, SANDBOX_ID, SETTINGS, decide, fresh, sample_pod

from agent.guest_components import AA_SOCKET, AA_SOCKET_DIR, CDH_SOCKET, CONTAINER_SOURCES
from agent.protocols import agent_pb2
from generator.policy import policy_data, render
from launcher import cri
from shim import spec as specmod

GUEST_PREFIX = "/run/confidential-containers"
OTHER_SPELLINGS = ["/run/confidential-containers", AA_SOCKET_DIR + "/", AA_SOCKET_DIR + "/x",
                   "//run/confidential-containers/attestation-agent", AA_SOCKET_DIR + "/../initdata",
                   CDH_SOCKET + "/", "/run/confidential-containers/./cdh.sock"]


def containerd_mount(source: str, dest: str | None = None, options: list[str] | None = None) -> dict[str, Any]:
    """A hostPath volume mount as containerd's CRI plugin writes it into config.json."""
    return {"destination": dest or source, "type": "bind", "source": source,
            "options": RO if options is None else options}


def container_spec(*mounts: dict[str, Any]) -> dict[str, Any]:
    return {"ociVersion": "1.0.2-dev", "process": {"args": ["sh"]},
            "annotations": {"io.kubernetes.cri.container-type": "container"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}, *mounts]}


def node_has(monkeypatch: pytest.MonkeyPatch, what: str, paths: list[str]) -> None:
    """Make the node's file system say ``what`` ("directory", "file" or "nothing") about ``paths`` (and
    what it really says about anything else): the shim decides on os.path.isdir / isfile."""
    real_isdir, real_isfile = os.path.isdir, os.path.isfile

    def fake(kind: str, real: Callable[[Any], bool]) -> Callable[[Any], bool]:
        return lambda p: (what == kind) if str(p) in paths else real(p)

    monkeypatch.setattr(os.path, "isdir", fake("directory", real_isdir))
    monkeypatch.setattr(os.path, "isfile", fake("file", real_isfile))


@pytest.mark.parametrize("node", ["directory", "file", "nothing"])
@pytest.mark.parametrize("source", sorted(CONTAINER_SOURCES))
def test_a_guest_socket_source_goes_through_unchanged(monkeypatch: pytest.MonkeyPatch, source: str,
                                                      node: str) -> None:
    node_has(monkeypatch, node, [source])
    mount = containerd_mount(source, "/var/run/aa")
    req, shares = specmod.create_requests(container_spec(mount), "c1", [])
    assert shares == [] and list(req.storages) == []
    got = [(m.destination, m.type, m.source, list(m.options)) for m in req.OCI.Mounts]
    assert got == [("/proc", "proc", "proc", []), ("/var/run/aa", "bind", source, RO)]


@pytest.mark.parametrize("source", OTHER_SPELLINGS)
def test_any_other_spelling_is_still_a_node_path(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    node_has(monkeypatch, "directory", [source])
    req, shares = specmod.create_requests(container_spec(containerd_mount(source, "/gc")), "c1", [])
    assert [s.host for s in shares] == [source]  # copied, as any node directory
    (m,) = [m for m in req.OCI.Mounts if m.destination == "/gc"]
    assert m.source == shares[0].guest and m.source.startswith(specmod.SHARED + "/c1-")
    node_has(monkeypatch, "nothing", [source])
    req, shares = specmod.create_requests(container_spec(containerd_mount(source, "/gc")), "c1", [])
    assert shares == [] and [m.destination for m in req.OCI.Mounts] == ["/proc"]  # dropped


def test_an_ordinary_host_directory_is_still_copied(tmp_path: Any) -> None:
    (tmp_path / "f").write_text("x")
    req, shares = specmod.create_requests(container_spec(containerd_mount(str(tmp_path), "/data")), "c1", [])
    assert [s.host for s in shares] == [str(tmp_path)]
    assert [m.source for m in req.OCI.Mounts if m.destination == "/data"] == [shares[0].guest]


@pytest.mark.parametrize("options", [["rbind", "rprivate", "rw"], ["rbind", "rprivate"], ["rbind", "ro", "rw"], []])
def test_a_guest_socket_mount_that_is_not_read_only_is_refused(options: list[str]) -> None:
    with pytest.raises(specmod.SpecError, match=f"the guest's {AA_SOCKET}.*only read-only"):
        specmod.create_requests(container_spec(containerd_mount(AA_SOCKET, options=options)), "c1", [])


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=4),
                 st.lists(st.one_of(st.sampled_from(["rbind", "rprivate", "ro", "rw"]), st.integers(), st.none()),
                          max_size=4)))
def test_any_options_give_the_mount_as_it_is_or_a_spec_error(options: Any) -> None:
    try:
        req, shares = specmod.create_requests(
            container_spec({"destination": "/aa", "type": "bind", "source": AA_SOCKET_DIR, "options": options}),
            "c1", [])
    except specmod.SpecError as exc:
        assert AA_SOCKET_DIR in str(exc) or "does not fit" in str(exc), str(exc)
        return
    assert isinstance(options, list) and "ro" in options and "rw" not in options
    (m,) = [m for m in req.OCI.Mounts if m.destination == "/aa"]
    assert (m.source, list(m.options), shares) == (AA_SOCKET_DIR, options, [])


def with_shims_mount(req: agent_pb2.CreateContainerRequest, shims: agent_pb2.CreateContainerRequest,
                     dest: str) -> agent_pb2.CreateContainerRequest:
    """``req`` (launcher/cri.py's, which the policy admits) with its mount at ``dest`` replaced by the one the
    shim sent."""
    out = copy.deepcopy(req)
    (i,) = [i for i, m in enumerate(out.OCI.Mounts) if m.destination == dest]
    (theirs,) = [m for m in shims.OCI.Mounts if m.destination == dest]
    out.OCI.Mounts[i].CopyFrom(theirs)
    return out


@pytest.mark.parametrize("source,dest", [(AA_SOCKET_DIR, None), (AA_SOCKET, None), (CDH_SOCKET, "/var/run/cdh")])
def test_the_generated_policy_admits_the_shims_mount(monkeypatch: pytest.MonkeyPatch, source: str,
                                                     dest: str | None) -> None:
    """The pod's request with the socket mount as the shim builds it from containerd's spec is allowed, for
    a node with a directory there (containerd made one) and without; the same mount as the shim used to send
    it (a copy in the shared directory) is denied, so the check can fail."""
    dest = dest or source
    pod = sample_pod(asking(source, mount_path=dest))
    web = dict(cri.container_requests(pod, IMAGES, SETTINGS, SANDBOX_ID, DEVICES))["web"]
    cid = web.container_id
    rendered = render(policy_data(pod, IMAGES, SETTINGS))

    def allowed(req: agent_pb2.CreateContainerRequest) -> bool:
        for p in fresh(rendered):  # a fresh engine each time: an admitted container id stays in use
            d = decide(p, "CreateContainerRequest", req)
            assert d.allowed or any("mount" in line for line in d.prints), d.prints
            return d.allowed
        raise AssertionError("no policy")

    assert allowed(web)
    for node in ("directory", "nothing"):
        node_has(monkeypatch, node, [source])
        shims, shares = specmod.create_requests(container_spec(containerd_mount(source, dest)), cid, [])
        assert shares == []
        assert allowed(with_shims_mount(web, shims, dest)), node
    copied = copy.deepcopy(web)
    (m,) = [m for m in copied.OCI.Mounts if m.destination == dest]
    m.source = specmod.shared_name(cid, dest)
    assert not allowed(copied)
