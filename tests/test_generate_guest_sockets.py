"""A pod's way to the guest's attestation-agent and data-hub sockets, through the generated policy.

A container asks with a hostPath volume naming the guest's socket path (agent/guest_components.py
CONTAINER_SOURCES), read-only. The generated policy must admit exactly the requests launcher/cri.py builds
for such a pod (built from the pod spec, never from policy_data), evaluated by the real rules on the agent's
engine, and deny the same mount in any other container, under any other source, destination or options, and
in any pod that did not ask. The generator refuses the request for anything but a private read-only mount.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_generate_policy import (
    DEVICES,
    IMAGES,
    SANDBOX_ID,
    SETTINGS,
    admits_its_own_requests,
    decide,
    fresh,
    sample_pod,
    sample_spec,
)

from agent.guest_components import AA_SOCKET, AA_SOCKET_DIR, CDH_SOCKET, CONTAINER_SOURCES
from agent.protocols import agent_pb2, oci_pb2
from generator.errors import PolicyGenError
from generator.model import PodTemplate
from generator.policy import policy_data, render
from launcher import cri

RO = ["rbind", "rprivate", "ro"]


def asking(path: str = AA_SOCKET_DIR, mount_path: str | None = None, container: int = 0,
           volume: dict[str, Any] | None = None, **mount: Any) -> dict[str, Any]:
    """The sample pod with container ``container`` (0: web, 1: side) mounting the guest's ``path``."""
    spec = sample_spec()
    spec["volumes"].append({"name": "gc", "hostPath": {"path": path, **(volume or {})}})
    spec["containers"][container]["volumeMounts"].append(
        {"name": "gc", "mountPath": mount_path or path, "readOnly": True, **mount})
    return spec


def guest_mounts(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    (c,) = [c for c in data["containers"] if c["name"] == name]
    return [m for m in c["OCI"]["Mounts"] if m["source"].startswith("/run/confidential-containers")]


def with_mount(req: agent_pb2.CreateContainerRequest, **fields: Any) -> agent_pb2.CreateContainerRequest:
    out = copy.deepcopy(req)
    out.OCI.Mounts.append(oci_pb2.Mount(**fields))
    return out


def edited(req: agent_pb2.CreateContainerRequest, edit: Callable[[oci_pb2.Mount], None]
           ) -> agent_pb2.CreateContainerRequest:
    out = copy.deepcopy(req)
    (m,) = [m for m in out.OCI.Mounts if m.source.startswith("/run/confidential-containers")]
    edit(m)
    return out


def denied_for_mount(p: Any, req: agent_pb2.CreateContainerRequest) -> None:
    d = decide(p, "CreateContainerRequest", req)
    assert not d.allowed
    assert any("mount" in line for line in d.prints), d.prints


@pytest.mark.parametrize("path,volume", [(AA_SOCKET_DIR, {}), (AA_SOCKET, {"type": ""}), (CDH_SOCKET, {})])
def test_the_asking_container_gets_exactly_that_mount(path: str, volume: dict[str, Any]) -> None:
    pod = sample_pod(asking(path, volume=volume))
    data = policy_data(pod, IMAGES, SETTINGS)  # no --allow-host-path: no host file reaches the pod
    assert guest_mounts(data, "web") == [{"destination": path, "source": path, "type_": "bind", "options": RO}]
    assert guest_mounts(data, "side") == [] and guest_mounts(data, "pause") == []
    for p in fresh(render(data)):
        reqs = dict(admits_its_own_requests(p, pod))
        mount: dict[str, Any] = {"destination": path, "source": path, "type": "bind", "options": RO}
        assert [m for m in reqs["web"].OCI.Mounts if m.source == path] == [oci_pb2.Mount(**mount)]
        denied_for_mount(p, with_mount(reqs["side"], **mount))  # the other container did not ask
        denied_for_mount(p, with_mount(reqs["pause"], **mount))


def test_another_mount_point_is_pinned_as_written() -> None:
    pod = sample_pod(asking(mount_path="/var/run/aa"))
    data = policy_data(pod, IMAGES, SETTINGS)
    assert guest_mounts(data, "web") == [{"destination": "/var/run/aa", "source": AA_SOCKET_DIR, "type_": "bind",
                                          "options": RO}]
    for p in fresh(render(data)):
        reqs = dict(admits_its_own_requests(p, pod))
        denied_for_mount(p, edited(reqs["web"], lambda m: setattr(m, "destination", AA_SOCKET_DIR)))


RENDERED_AA = render(policy_data(sample_pod(asking()), IMAGES, SETTINGS))
OTHER_SOURCES = ["/run/confidential-containers", AA_SOCKET_DIR + "/", AA_SOCKET_DIR + "/x", AA_SOCKET,
                 CDH_SOCKET, AA_SOCKET_DIR + "/../initdata", "//run/confidential-containers/attestation-agent",
                 "/etc", "/", "/run/kata-containers/shared/containers/x", "^/run/.*"]


@pytest.mark.parametrize("source", OTHER_SOURCES)
def test_only_that_source(source: str) -> None:
    pod = sample_pod(asking())
    for p in fresh(RENDERED_AA):
        web = dict(cri.container_requests(pod, IMAGES, SETTINGS, SANDBOX_ID, DEVICES))["web"]
        assert decide(p, "CreateContainerRequest", web).allowed
        denied_for_mount(p, edited(web, lambda m: setattr(m, "source", source)))


def options(*opts: str) -> Callable[[oci_pb2.Mount], None]:
    def edit(m: oci_pb2.Mount) -> None:
        del m.options[:]
        m.options.extend(opts)

    return edit


def test_only_that_destination_type_and_options() -> None:
    pod = sample_pod(asking())
    for p in fresh(RENDERED_AA):
        web = dict(cri.container_requests(pod, IMAGES, SETTINGS, SANDBOX_ID, DEVICES))["web"]
        for opts in (["rbind", "rprivate", "rw"], ["rbind", "rprivate"], ["rbind", "rshared", "ro"],
                     ["bind", "rprivate", "ro"], ["rbind", "ro", "rprivate"]):
            denied_for_mount(p, edited(web, options(*opts)))
        denied_for_mount(p, edited(web, lambda m: setattr(m, "type", "tmpfs")))
        denied_for_mount(p, edited(web, lambda m: setattr(m, "destination", "/etc")))


@pytest.mark.parametrize("path", sorted(CONTAINER_SOURCES))
def test_a_pod_that_did_not_ask_gets_no_guest_socket(path: str) -> None:
    pod = sample_pod()
    for p in fresh(render(policy_data(pod, IMAGES, SETTINGS))):
        reqs = dict(admits_its_own_requests(p, pod))
        for name in ("web", "side"):
            denied_for_mount(p, with_mount(reqs[name], destination=path, source=path, type="bind", options=RO))


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="/.-_acdefginorstuxz", min_size=1, max_size=60))
def test_no_other_source_string_is_admitted(source: str) -> None:
    """Whatever the host puts as the source of the pinned mount, only the pinned path passes."""
    pod = sample_pod(asking())
    web = dict(cri.container_requests(pod, IMAGES, SETTINGS, SANDBOX_ID, DEVICES))["web"]
    for p in fresh(RENDERED_AA):
        d = decide(p, "CreateContainerRequest", edited(web, lambda m: setattr(m, "source", source)))
        assert d.allowed == (source == AA_SOCKET_DIR), (source, d.prints)


REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "read-write": (asking(readOnly=False), "spec.containers[0].volumeMounts[3].readOnly", "read-only"),
    "readOnly left out": ({**asking(), "containers": [
        {**sample_spec()["containers"][0], "volumeMounts": [{"name": "gc", "mountPath": "/aa"}]},
        sample_spec()["containers"][1]]}, "spec.containers[0].volumeMounts[0].readOnly", "readOnly: true"),
    "propagation": (asking(mountPropagation="HostToContainer"),
                    "spec.containers[0].volumeMounts[3].mountPropagation", "'HostToContainer'"),
    "bidirectional": (asking(mountPropagation="Bidirectional"),
                      "spec.containers[0].volumeMounts[3].mountPropagation", "'Bidirectional'"),
    # the kubelet checks a hostPath's type on the node, which has no guest socket
    "typed": (asking(volume={"type": "Directory"}), "spec.volumes[3].hostPath.type", "leave the type out"),
    "socket typed": (asking(CDH_SOCKET, volume={"type": "Socket"}), "spec.volumes[3].hostPath.type", "on the node"),
    "create it": (asking(volume={"type": "DirectoryOrCreate"}), "spec.volumes[3].hostPath.type", "'DirectoryOrCreate'"),
    "type not a string": (asking(volume={"type": 3}), "spec.volumes[3].hostPath.type", "must be a str"),
    # not one of the guest's socket paths: an ordinary hostPath, refused without --allow-host-path
    "the data hub's whole directory": (asking("/run/confidential-containers"), "spec.volumes[3].hostPath",
                                       "--allow-host-path"),
    "another spelling": (asking(AA_SOCKET_DIR + "/"), "spec.volumes[3].hostPath", "--allow-host-path"),
    "below it": (asking(AA_SOCKET_DIR + "/other"), "spec.volumes[3].hostPath", "--allow-host-path"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_requests_name_the_field(case: str) -> None:
    spec, field, needle = REFUSED[case]
    with pytest.raises(PolicyGenError) as err:
        policy_data(sample_pod(spec), IMAGES, SETTINGS)
    msg = str(err.value)
    assert f": {field}: " in msg, msg
    assert needle in msg, msg


@settings(max_examples=80, deadline=None)
@given(st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["", "Directory", "Socket", "File", "DirectoryOrCreate", 0, None]),
    "path": st.sampled_from([*CONTAINER_SOURCES, "/run/confidential-containers", 7, None])}),
    st.fixed_dictionaries({}, optional={"readOnly": st.sampled_from([True, False, "true", None]),
                                        "mountPropagation": st.sampled_from(["None", "HostToContainer", 1, None])}))
def test_any_such_volume_is_a_read_only_pin_or_a_policy_gen_error(volume: dict[str, Any],
                                                                   mount: dict[str, Any]) -> None:
    spec = sample_spec()
    spec["volumes"].append({"name": "gc", "hostPath": volume})
    spec["containers"][0]["volumeMounts"].append({"name": "gc", "mountPath": "/gc", **mount})
    pod: PodTemplate = sample_pod(spec)
    try:
        data = policy_data(pod, IMAGES, SETTINGS)
    except PolicyGenError as exc:
        assert str(exc).startswith("pod.yaml: document 0 (Pod shop/web-pod): spec."), str(exc)
        return
    (m,) = [m for m in data["containers"][1]["OCI"]["Mounts"] if m["destination"] == "/gc"]
    assert m == {"destination": "/gc", "source": volume["path"], "type_": "bind", "options": RO}
