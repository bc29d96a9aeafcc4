"""cocoon generate's policy stage, end to end on the agent's own engine.

For sample pods (two containers, ConfigMap and Secret env, volumes, exec probes, security contexts, images
with Env/Entrypoint/Cmd/WorkingDir/User and two layers each) the generated policy must admit exactly the
requests launcher/cri.py builds for that pod (built from the pod spec and image config, never from
policy_data), evaluated as the agent evaluates them (agent.policy.Policy on serde JSON); a change to any one
field of those requests must be denied with a reason naming the field.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from agent.policy import Decision, Policy
from agent.policy.serde import to_json
from agent.protocols import agent_pb2
from generator.errors import PolicyGenError
from generator.model import ImageInfo, Layer, PodTemplate
from generator.policy import policy_data, render
from generator.settings import Settings, SettingsError
from launcher import cri

SANDBOX_ID = "5a" * 32
SETTINGS = Settings.load()


def layer(n: int) -> Layer:
    root = f"{n:02x}" * 32
    return Layer(digest="sha256:" + f"{n + 100:02x}" * 32, diff_id="sha256:" + f"{n + 150:02x}" * 32,
                 root_hash=root, hash_offset=4096 * (n + 3), size=4096 * (n + 4), file=f"{n}.img")


WEB = ImageInfo(
    reference="127.0.0.1:5000/web:1.0", pinned="127.0.0.1:5000/web@sha256:" + "a1" * 32,
    config={"config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "WEB_MODE=image", "LANG=C.UTF-8"],
                       "Entrypoint": ["/bin/web"], "Cmd": ["--port", "8080"], "WorkingDir": "/srv",
                       "User": "1000:1000"}},
    layers=(layer(1), layer(2)))
SIDE = ImageInfo(
    reference="127.0.0.1:5000/side:2", pinned="127.0.0.1:5000/side@sha256:" + "b2" * 32,
    config={"config": {"Env": ["SIDE=1"], "Cmd": ["/bin/side"], "User": "2000"}},
    layers=(layer(3), layer(4)))
IMAGES = {WEB.reference: WEB, SIDE.reference: SIDE}
DEVICES = {layer(n).root_hash: f"/dev/disk/by-id/virtio-layer{n - 1}" for n in range(1, 5)}


def sample_spec() -> dict[str, Any]:
    return {
        "runtimeClassName": "cocoon",
        "securityContext": {"runAsNonRoot": True, "supplementalGroups": [3000], "fsGroup": 4000},
        "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "web-conf"}},
                    {"name": "creds", "secret": {"secretName": "web-secret"}}],
        "containers": [
            {"name": "web", "image": WEB.reference,
             "args": ["--port", "$(PORT)", "--mode=$(MODE)"],
             "env": [{"name": "PORT", "value": "9090"},
                     {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "web-conf", "key": "mode"}}},
                     {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "web-secret", "key": "token"}}},
                     {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                     {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                     {"name": "WEB_MODE", "value": "yaml"}],
             "envFrom": [{"configMapRef": {"name": "web-conf"}, "prefix": "CONF_"}],
             "volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                              {"name": "conf", "mountPath": "/etc/web"},
                              {"name": "creds", "mountPath": "/run/creds", "readOnly": True}],
             "livenessProbe": {"exec": {"command": ["/bin/web", "--health"]}},
             "readinessProbe": {"exec": {"command": ["cat", "/srv/ready"]}},
             "securityContext": {"allowPrivilegeEscalation": False,
                                 "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]}}},
            {"name": "side", "image": SIDE.reference,
             "command": ["/bin/side", "--watch"],
             "workingDir": "/work",
             "volumeMounts": [{"name": "cache", "mountPath": "/cache", "readOnly": True}],
             "startupProbe": {"exec": {"command": ["/bin/side", "--ready"]}},
             "securityContext": {"runAsUser": 2001, "runAsGroup": 2002, "readOnlyRootFilesystem": True,
                                 "capabilities": {"drop": ["ALL"]}}},
        ],
    }


def sample_pod(spec: dict[str, Any] | None = None, **kw: Any) -> PodTemplate:
    args: dict[str, Any] = {
        "source": "pod.yaml", "index": 0, "kind": "Pod", "name": "web-pod", "namespace": "shop",
        "metadata": {"name": "web-pod", "annotations": {"io.cocoon.exec": '[["/bin/sh", "-c", "date"]]'}},
        "spec": sample_spec() if spec is None else spec,
        "config_maps": {"web-conf": {"mode": "fast", "level": "3", "bad-key!": "x"}},
        "secrets": {"web-secret": {"token": "s3cr3t"}},
    }
    args.update(kw)
    return PodTemplate(**args)


@pytest.fixture(scope="module")
def rendered() -> str:
    return render(policy_data(sample_pod(), IMAGES, SETTINGS))


@pytest.fixture(scope="module")
def requests() -> list[tuple[str, agent_pb2.CreateContainerRequest]]:
    return cri.container_requests(sample_pod(), IMAGES, SETTINGS, SANDBOX_ID, DEVICES)


def decide(policy: Policy, endpoint: str, msg: Message | dict[str, Any], cls: type[Message] | None = None) -> Decision:
    if isinstance(msg, dict):
        assert cls is not None
        msg = json_format.ParseDict(msg, cls())
    return policy.evaluate(endpoint, to_json(msg))


def fresh(text: str) -> Iterator[Policy]:
    p = Policy(text)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def policy(rendered: str) -> Iterator[Policy]:
    yield from fresh(rendered)


def admits_its_own_requests(p: Policy, pod: PodTemplate) -> list[tuple[str, agent_pb2.CreateContainerRequest]]:
    """CreateSandbox and every CreateContainer the runtime sends for ``pod`` are allowed; returns the latter."""
    assert decide(p, "CreateSandboxRequest", cri.sandbox_request(pod, SETTINGS, SANDBOX_ID)).allowed
    reqs = cri.container_requests(pod, IMAGES, SETTINGS, SANDBOX_ID, DEVICES)
    for name, req in reqs:
        d = decide(p, "CreateContainerRequest", req)
        assert d.allowed, (name, d.prints)
    return reqs


def as_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def test_the_pods_own_requests_are_allowed(policy: Policy, requests: list[tuple[str, Any]]) -> None:
    d = decide(policy, "CreateSandboxRequest", cri.sandbox_request(sample_pod(), SETTINGS, SANDBOX_ID))
    assert d.allowed, d.prints
    assert [name for name, _ in requests] == ["pause", "web", "side"]
    for name, req in requests:
        d = decide(policy, "CreateContainerRequest", req)
        assert d.allowed, (name, d.prints)
    for name, req in requests[1:]:
        c = next(c for c in sample_spec()["containers"] if c["name"] == name)
        for argv in [*cri.probe_commands(c), ["/bin/sh", "-c", "date"]]:
            d = decide(policy, "ExecProcessRequest", cri.exec_request(req, argv))
            assert d.allowed, (name, argv, d.prints)


def test_the_files_the_runtime_copies_first_are_allowed_and_nothing_outside(policy: Policy,
                                                                          requests: list[tuple[str, Any]]) -> None:
    copies = [c for _, req in requests for c in cri.shared_files(sample_pod(), req, SETTINGS)]
    kinds = {(c.path.rsplit("-", 1)[-1], c.file_mode >> 12) for c in copies}
    assert {("hosts", 0o10), ("hostname", 0o10), ("resolv.conf", 0o10), ("log", 0o10), ("serviceaccount", 0o4)} <= kinds
    from agent.service import copy_file_policy_input  # the input Kata's agent builds for CopyFile

    def copy(c: agent_pb2.CopyFileRequest) -> Decision:
        return policy.evaluate("CopyFileRequest", json.dumps(copy_file_policy_input(c)))

    for c in copies:
        d = copy(c)
        assert d.allowed, (c.path, d.prints)
    hosts = next(c for c in copies if c.path.endswith("-hosts"))
    for path in ("/etc/passwd", hosts.path.replace("/containers/", "/containers/../"),
                 "/run/kata-containers/shared/containers/hosts"):
        bad = agent_pb2.CopyFileRequest()
        bad.CopyFrom(hosts)
        bad.path = path
        assert not copy(bad).allowed, path


# --- single-field mutations: each denied, the reason naming the field ---------------------------------------

@pytest.fixture(scope="module")
def empty_policy(rendered: str) -> Iterator[Policy]:
    """A policy no request was admitted by: every mutation below is judged from the same (empty) state."""
    yield from fresh(rendered)


@pytest.fixture(scope="module")
def created_policy(rendered: str, requests: list[tuple[str, Any]]) -> Iterator[Policy]:
    """A policy that admitted the pod's sandbox and containers (for exec requests)."""
    for p in fresh(rendered):
        assert decide(p, "CreateSandboxRequest", cri.sandbox_request(sample_pod(), SETTINGS, SANDBOX_ID)).allowed
        for _, req in requests:
            assert decide(p, "CreateContainerRequest", req).allowed
        yield p


def _at(doc: Any, path: str) -> tuple[Any, Any]:
    keys: list[Any] = [int(k) if k.lstrip("-").isdigit() else k for k in path.split(".")]
    node = doc
    for k in keys[:-1]:
        node = node[k]
    return node, keys[-1]


Edit = Callable[[dict[str, Any]], None]


def set_(path: str, value: Any) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        node, key = _at(doc, path)
        node[key] = value
    return edit


def change(path: str, fn: Callable[[Any], Any]) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        node, key = _at(doc, path)
        node[key] = fn(node[key])
    return edit


def delete(path: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        node, key = _at(doc, path)
        del node[key]
    return edit


def annotation(key: str, value: str) -> Edit:
    def edit(doc: dict[str, Any]) -> None:  # annotation keys hold dots: not a path
        doc["OCI"]["Annotations"][key] = value
    return edit


def mutated(req: Message, edit: Edit) -> dict[str, Any]:
    doc = json_format.MessageToDict(req, preserving_proto_field_name=True)
    edit(doc)
    return doc


def assert_denied(d: Decision, endpoint: str, *needles: str) -> None:
    reason = d.reason(endpoint)
    assert not d.allowed, f"allowed: {reason}"
    for n in needles:
        assert n in reason, f"{n!r} not in {reason!r}"


def _req(requests: list[tuple[str, Any]], name: str) -> agent_pb2.CreateContainerRequest:
    req: agent_pb2.CreateContainerRequest = next(r for n, r in requests if n == name)
    return req


def _index(req: agent_pb2.CreateContainerRequest, dest: str) -> int:
    return next(i for i, m in enumerate(req.OCI.Mounts) if m.destination == dest)


def test_every_arg_is_pinned(empty_policy: Policy, requests: list[tuple[str, Any]]) -> None:
    for name in ("web", "side"):
        req = _req(requests, name)
        assert len(req.OCI.Process.Args) >= 2
        for i in range(len(req.OCI.Process.Args)):
            d = decide(empty_policy, "CreateContainerRequest",
                       mutated(req, change(f"OCI.Process.Args.{i}", lambda a: a + "x")),
                       agent_pb2.CreateContainerRequest)
            assert_denied(d, "CreateContainerRequest", "process args")


def test_every_env_var_is_pinned(empty_policy: Policy, requests: list[tuple[str, Any]]) -> None:
    for name in ("web", "side"):
        req = _req(requests, name)
        for i, var in enumerate(req.OCI.Process.Env):
            bad = var + " !"
            d = decide(empty_policy, "CreateContainerRequest", mutated(req, set_(f"OCI.Process.Env.{i}", bad)),
                       agent_pb2.CreateContainerRequest)
            assert_denied(d, "CreateContainerRequest", f"environment variable {bad} is not allowed")
        d = decide(empty_policy, "CreateContainerRequest",
                   mutated(req, change("OCI.Process.Env", lambda e: [*e, "LD_PRELOAD=/tmp/x.so"])),
                   agent_pb2.CreateContainerRequest)
        assert_denied(d, "CreateContainerRequest", "environment variable LD_PRELOAD=/tmp/x.so")


def test_the_env_is_what_the_yaml_and_image_say(requests: list[tuple[str, Any]]) -> None:
    env = list(_req(requests, "web").OCI.Process.Env)
    assert env[0] == "PATH=/usr/local/bin:/usr/bin:/bin"  # the image's replaces the default in place
    for var in ("WEB_MODE=yaml", "LANG=C.UTF-8", "PORT=9090", "MODE=fast", "TOKEN=s3cr3t", "POD_NAME=web-pod",
                "CONF_mode=fast", "CONF_level=3", "HOSTNAME=web-pod"):
        assert var in env
    assert not any(v.startswith("CONF_bad-key") for v in env)
    assert list(_req(requests, "web").OCI.Process.Args) == ["/bin/web", "--port", "9090", "--mode=fast"]
    assert list(_req(requests, "side").OCI.Process.Args) == ["/bin/side", "--watch"]


CREATE_CASES: dict[str, tuple[str, Edit, tuple[str, ...]]] = {
    "cwd": ("web", set_("OCI.Process.Cwd", "/"), ("process Cwd",)),
    "uid": ("web", set_("OCI.Process.User.UID", 0), ("User.UID",)),
    "gid": ("side", set_("OCI.Process.User.GID", 0), ("User.GID",)),
    "extra group": ("web", change("OCI.Process.User.AdditionalGids", lambda g: [*g, 0]), ("AdditionalGids",)),
    "no new privileges": ("web", set_("OCI.Process.NoNewPrivileges", False), ("NoNewPrivileges",)),
    "terminal": ("web", set_("OCI.Process.Terminal", True), ("Terminal",)),
    "readonly root": ("side", set_("OCI.Root.Readonly", False), ("Root.Readonly",)),
    "root path": ("web", set_("OCI.Root.Path", "/etc"), ("Root.Path",)),
    "layer 0 root hash": ("web", change("storages.0.driver_options.0", lambda o: o[:-2] + "00"),
                          ("storage 0 layer root hash",)),
    "layer 1 hash offset": ("web", set_("storages.1.driver_options.1", "cocoon.verity.hashoffset=8192"),
                            ("storage 1 layer hash offset",)),
    "layers reordered": ("web", change("storages", lambda s: [s[1], s[0], *s[2:]]),
                         ("storage 0 layer root hash", "storage 1 layer root hash")),
    "layer missing": ("side", change("storages", lambda s: s[1:]), ("storage 0 layer root hash", "storage 1",
                                                                    "is missing")),
    "layer extra": ("web", change("storages", lambda s: [*s, s[0]]), ("storage 3", "is extra")),
    "layer device": ("web", set_("storages.0.source", "/dev/vdb"), ("storage 0 source",)),
    "layer mount point": ("web", set_("storages.1.mount_point", "/run/kata-containers/shared/containers/x"),
                          ("storage 1 mount_point",)),
    "layer read-write": ("web", set_("storages.0.options", ["rw"]), ("storage 0 options",)),
    "emptyDir storage": ("web", set_("storages.2.mount_point", "/run/kata-containers/sandbox/local/other"),
                         ("storage 2 mount_point",)),
    "sandbox name": ("web", annotation("io.kubernetes.cri.sandbox-name", "other-pod"),
                     ("sandbox-name",)),
    "sandbox namespace": ("web", annotation("io.kubernetes.cri.sandbox-namespace", "default"),
                          ("sandbox-namespace",)),
    "image name": ("web", annotation("io.kubernetes.cri.image-name", WEB.reference), ("image-name",)),
    "unknown annotation": ("web", annotation("evil", "1"), ("annotation evil is not allowed",)),
    "namespace missing": ("web", change("OCI.Linux.Namespaces", lambda ns: [n for n in ns if n["Type"] != "ipc"]),
                          ("namespace ipc is missing",)),
    "namespace added": ("web", change("OCI.Linux.Namespaces", lambda ns: [*ns, {"Type": "user"}]),
                        ("namespace", "user", "not allowed")),
    "namespace joined": ("web", set_("OCI.Linux.Namespaces.0.Path", "/proc/1/ns/pid"), ("joins a path",)),
    "masked path": ("web", change("OCI.Linux.MaskedPaths", lambda p: p[1:]), ("masked path /proc/acpi",)),
    "sysctl": ("web", set_("OCI.Linux.Sysctl", {"kernel.shm_rmid_forced": "1"}), ("sysctl kernel.shm_rmid_forced",)),
    "hooks": ("web", set_("OCI.Hooks", {"Prestart": [{"Path": "/bin/sh"}]}), ("Hooks",)),
}


@pytest.mark.parametrize("case", sorted(CREATE_CASES))
def test_a_changed_field_is_denied_and_named(case: str, empty_policy: Policy,
                                             requests: list[tuple[str, Any]]) -> None:
    name, edit, needles = CREATE_CASES[case]
    d = decide(empty_policy, "CreateContainerRequest", mutated(_req(requests, name), edit),
               agent_pb2.CreateContainerRequest)
    assert_denied(d, "CreateContainerRequest", *needles)


@pytest.mark.parametrize("set_name", ["Bounding", "Effective", "Permitted", "Inheritable", "Ambient"])
def test_each_capability_set_takes_no_extra_cap(set_name: str, empty_policy: Policy,
                                                requests: list[tuple[str, Any]]) -> None:
    for name in ("web", "side"):
        req = _req(requests, name)
        doc = json_format.MessageToDict(req, preserving_proto_field_name=True)
        caps = doc["OCI"]["Process"].setdefault("Capabilities", {})
        caps[set_name] = [*caps.get(set_name, []), "CAP_SYS_ADMIN"]
        d = decide(empty_policy, "CreateContainerRequest", doc, agent_pb2.CreateContainerRequest)
        assert_denied(d, "CreateContainerRequest", f"capability CAP_SYS_ADMIN in {set_name} is not allowed")


def test_capabilities_are_the_yamls(requests: list[tuple[str, Any]], empty_policy: Policy) -> None:
    web = _req(requests, "web").OCI.Process.Capabilities
    assert "CAP_NET_ADMIN" in web.Bounding and "CAP_MKNOD" not in web.Bounding
    assert list(_req(requests, "side").OCI.Process.Capabilities.Effective) == []
    doc = mutated(_req(requests, "web"), change("OCI.Process.Capabilities.Permitted", lambda c: c[1:]))
    d = decide(empty_policy, "CreateContainerRequest", doc, agent_pb2.CreateContainerRequest)
    assert_denied(d, "CreateContainerRequest", "in Permitted are missing")


@pytest.mark.parametrize("dest", ["/etc/web", "/run/creds", "/cache", "/etc/hosts", "/proc", "/dev/shm",
                                  "/var/run/secrets/kubernetes.io/serviceaccount"])
def test_a_mounts_source_destination_and_options_are_pinned(dest: str, empty_policy: Policy,
                                                            requests: list[tuple[str, Any]]) -> None:
    req = _req(requests, "web")
    i = _index(req, dest)
    for field, edit in (("source", change(f"OCI.Mounts.{i}.source", lambda s: s + "x")),
                        ("destination", change(f"OCI.Mounts.{i}.destination", lambda s: s + "x")),
                        ("options", change(f"OCI.Mounts.{i}.options", lambda o: [x for x in o if x != "ro"] + ["rw"]
                                           if "ro" in o else [*o, "exec"]))):
        d = decide(empty_policy, "CreateContainerRequest", mutated(req, edit), agent_pb2.CreateContainerRequest)
        shown = dest + "x" if field == "destination" else dest
        assert_denied(d, "CreateContainerRequest", f"mount {shown} from")


def test_a_read_only_root_makes_hostname_and_resolv_conf_read_only(requests: list[tuple[str, Any]]) -> None:
    side = _req(requests, "side")
    for dest in ("/etc/hostname", "/etc/resolv.conf"):
        assert "ro" in side.OCI.Mounts[_index(side, dest)].options
    assert list(side.OCI.Mounts[_index(side, "/cache")].options) == ["rbind", "rprivate", "ro"]


# --- exec -------------------------------------------------------------------------------------------------

def test_exec_only_the_listed_commands_with_the_containers_settings(created_policy: Policy,
                                                                     requests: list[tuple[str, Any]]) -> None:
    web, side = _req(requests, "web"), _req(requests, "side")
    assert decide(created_policy, "ExecProcessRequest", cri.exec_request(web, ["cat", "/srv/ready"])).allowed
    cases: list[tuple[agent_pb2.CreateContainerRequest, Edit, str]] = [
        (web, set_("process.Args", ["cat", "/etc/shadow"]), "is not in the allow list"),
        (side, set_("process.Args", ["/bin/web", "--health"]), "is not in the allow list"),  # web's probe, not side's
        (web, set_("process.Cwd", "/tmp"), "process Cwd"),
        (web, set_("process.User.UID", 0), "User.UID"),
        (web, change("process.Env", lambda e: [*e, "EVIL=1"]), "environment variable EVIL=1"),
        (web, set_("process.NoNewPrivileges", False), "NoNewPrivileges"),
        (web, set_("process.Capabilities", {"Bounding": ["CAP_SYS_ADMIN"]}), "Capabilities"),
        (web, set_("container_id", "f" * 64), "was not created under this policy"),
    ]
    for create, edit, needle in cases:
        probe = ["/bin/side", "--ready"] if create is side else ["/bin/web", "--health"]
        doc = mutated(cri.exec_request(create, probe), edit)
        d = decide(created_policy, "ExecProcessRequest", doc, agent_pb2.ExecProcessRequest)
        assert_denied(d, "ExecProcessRequest", needle)


def test_create_sandbox_mutations_are_denied(empty_policy: Policy) -> None:
    req = cri.sandbox_request(sample_pod(), SETTINGS, SANDBOX_ID)
    for edit, needle in (
            (set_("sandbox_pidns", True), "sandbox_pidns true"),
            (set_("storages.0.mount_point", "/etc"), "storage 0"),
            (set_("storages.0.options", ["mode=1777"]), "storage 0"),
            (set_("guest_hook_path", "/usr/share/oci/hooks"), "guest_hook_path"),
            (set_("kernel_modules", [{"name": "evil"}]), "kernel_modules"),
            (change("storages", lambda s: [*s, {**s[0], "mount_point": "/run/kata-containers/sandbox/x"}]),
             "storage 1")):
        d = decide(empty_policy, "CreateSandboxRequest", mutated(req, edit), agent_pb2.CreateSandboxRequest)
        assert_denied(d, "CreateSandboxRequest", needle)


# --- what the generator refuses ---------------------------------------------------------------------------

def _with(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    spec = sample_spec()
    edit(spec)
    return spec


def _image_user(user: str) -> dict[str, ImageInfo]:
    cfg = copy.deepcopy(dict(WEB.config))
    cfg["config"]["User"] = user
    return {**IMAGES, WEB.reference: ImageInfo(WEB.reference, WEB.pinned, cfg, WEB.layers)}


GEN_ERRORS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, ImageInfo], str, str]] = {
    "privileged": (_with(lambda s: s["containers"][1]["securityContext"].update(privileged=True)), {}, IMAGES,
                   "spec.containers[1].securityContext.privileged", "privileged"),
    "hostPath": (_with(lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/etc"}})
                       or s["containers"][0]["volumeMounts"].append({"name": "host", "mountPath": "/host"})),
                 {}, IMAGES, "spec.volumes[3].hostPath", "hostPath"),
    "user name": (sample_spec(), {}, _image_user("nginx"), "spec.containers[0].securityContext.runAsUser",
                  "'nginx'"),
    "group name": (sample_spec(), {}, _image_user("1000:www"), "spec.containers[0].securityContext.runAsGroup",
                   "'www'"),
    "missing ConfigMap": (sample_spec(), {"config_maps": {}}, IMAGES,
                          "spec.containers[0].envFrom[0].configMapRef.name", "ConfigMap 'web-conf'"),
    "missing ConfigMap key": (sample_spec(), {"config_maps": {"web-conf": {"level": "1"}}}, IMAGES,
                              "spec.containers[0].env[1].valueFrom.configMapKeyRef.key", "no key 'mode'"),
    "missing Secret key": (sample_spec(), {"secrets": {"web-secret": {}}}, IMAGES,
                           "spec.containers[0].env[2].valueFrom.secretKeyRef.key", "no key 'token'"),
    "volume ConfigMap missing": (_with(lambda s: s["containers"][0].update(envFrom=[], env=[], args=[])),
                                 {"config_maps": {}}, IMAGES, "spec.volumes[1].configMap.name", "ConfigMap 'web-conf'"),
    "args name a downward value": (_with(lambda s: s["containers"][0]["args"].append("--ip=$(POD_IP)")), {}, IMAGES,
                                   "spec.containers[0].args[3]", "$(POD_IP)"),
    "env names a service value": (_with(lambda s: s["containers"][0]["env"].append(
        {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST)"})), {}, IMAGES,
        "spec.containers[0].env[6].value", "$(KUBERNETES_SERVICE_HOST)"),
    "mounted twice": (_with(lambda s: s["containers"][0]["volumeMounts"].append({"name": "conf",
                                                                                 "mountPath": "/cache"})),
                      {}, IMAGES, "spec.containers[0].volumeMounts[3].mountPath", "twice"),
    "unknown volume type": (_with(lambda s: s["volumes"].append({"name": "pvc", "persistentVolumeClaim": {}})
                                  or s["containers"][0]["volumeMounts"].append({"name": "pvc", "mountPath": "/d"})),
                            {}, IMAGES, "spec.volumes[3]", "persistentVolumeClaim"),
    "subPath": (_with(lambda s: s["containers"][0]["volumeMounts"][1].update(subPath="a")), {}, IMAGES,
                "spec.containers[0].volumeMounts[1].subPath", "subPath"),
    "host network": (_with(lambda s: s.update(hostNetwork=True)), {}, IMAGES, "spec.hostNetwork", "not supported"),
    "other runtime class": (_with(lambda s: s.update(runtimeClassName="kata")), {}, IMAGES, "spec.runtimeClassName",
                            "'cocoon'"),
    "unresolved image": (_with(lambda s: s["containers"][1].update(image="other:1")), {}, IMAGES,
                         "spec.containers[1].image", "'other:1'"),
    "no command": (_with(lambda s: s["containers"][1].pop("command")),
                   {}, {**IMAGES, SIDE.reference: ImageInfo(SIDE.reference, SIDE.pinned, {"config": {}}, SIDE.layers)},
                   "spec.containers[1].command", "names a command"),
    "bad exec annotation": ({}, {"metadata": {"annotations": {"io.cocoon.exec": '["/bin/sh"]'}}}, IMAGES,
                            "metadata.annotations[io.cocoon.exec]", "argv lists"),
    "uid not a number": (_with(lambda s: s["containers"][1]["securityContext"].update(runAsUser="0")), {}, IMAGES,
                         "spec.containers[1].securityContext.runAsUser", "must be a int"),
    "unknown downward field": (_with(lambda s: s["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nothing"}}})), {}, IMAGES,
        "spec.containers[0].env[6].valueFrom.fieldRef.fieldPath", "spec.nothing"),
}


@pytest.mark.parametrize("case", sorted(GEN_ERRORS))
def test_refused_pods_name_the_document_and_field(case: str) -> None:
    spec, pod_kw, images, field, needle = GEN_ERRORS[case]
    pod = sample_pod(spec or sample_spec(), **pod_kw)
    with pytest.raises(PolicyGenError) as err:
        policy_data(pod, images, SETTINGS)
    msg = str(err.value)
    assert msg.startswith("pod.yaml: document 0 (Pod shop/web-pod): "), msg
    assert f": {field}: " in msg, msg
    assert needle in msg, msg


def test_privileged_and_host_path_when_allowed() -> None:
    spec = GEN_ERRORS["privileged"][0]
    data = policy_data(sample_pod(spec), IMAGES, SETTINGS, allow_privileged=True)
    side = data["containers"][2]
    assert side["OCI"]["Process"]["Capabilities"]["Bounding"] == SETTINGS.doc["common"]["privileged_caps"]
    assert side["OCI"]["Linux"]["MaskedPaths"] == []
    data = policy_data(sample_pod(GEN_ERRORS["hostPath"][0]), IMAGES, SETTINGS, allow_host_path=True)
    assert {"destination": "/host", "source": "/etc", "type_": "bind", "options": ["rbind", "rprivate", "rw"]} in \
        data["containers"][1]["OCI"]["Mounts"]


def test_policy_data_has_genpolicys_shape_and_renders_deterministically() -> None:
    data = policy_data(sample_pod(), IMAGES, SETTINGS)
    assert set(data) == {"containers", "common", "sandbox", "request_defaults"}
    assert [c["name"] for c in data["containers"]] == ["pause", "web", "side"]
    pause, web = data["containers"][0], data["containers"][1]
    assert pause["OCI"]["Annotations"]["io.kubernetes.cri.container-type"] == "sandbox" and pause["storages"] == []
    assert web["image"] == WEB.pinned
    assert [s["driver_options"] for s in web["storages"][:2]] == [
        [f"cocoon.verity.roothash={x.root_hash}", f"cocoon.verity.hashoffset={x.hash_offset}"] for x in WEB.layers]
    assert web["exec_commands"] == [["/bin/web", "--health"], ["cat", "/srv/ready"], ["/bin/sh", "-c", "date"]]
    assert data["sandbox"]["name"] == "web-pod" and data["sandbox"]["namespace"] == "shop"
    text = render(data)
    assert text == render(policy_data(sample_pod(), IMAGES, SETTINGS))
    assert text.startswith("# cocoon") and "\npolicy_data := {" in text
    assert json.loads(text.split("\npolicy_data := ", 1)[1]) == data


def test_a_workloads_pods_are_matched_by_name_pattern() -> None:
    pod = sample_pod(kind="Deployment", name="web")
    text = render(policy_data(pod, IMAGES, SETTINGS))
    for p in fresh(text):
        assert decide(p, "CreateSandboxRequest", cri.sandbox_request(pod, SETTINGS, SANDBOX_ID)).allowed
        for name, req in cri.container_requests(pod, IMAGES, SETTINGS, SANDBOX_ID, DEVICES):
            d = decide(p, "CreateContainerRequest", req)
            assert d.allowed, (name, d.prints)
        other = mutated(req, annotation("io.kubernetes.cri.sandbox-name", "webserver-6d4cf56db6-x7k2p"))
        assert_denied(decide(p, "CreateContainerRequest", other, agent_pb2.CreateContainerRequest),
                      "CreateContainerRequest", "sandbox-name")


# --- settings ---------------------------------------------------------------------------------------------

def test_settings_are_read_strictly(tmp_path: Any) -> None:
    text = (SETTINGS_FILE := __import__("generator.settings", fromlist=["x"]).DEFAULT_FILE).read_text()
    assert Settings.parse(text, "s.json").doc == SETTINGS.doc
    cases = {
        text.replace('"oci_version": "1.1.0",', '"oci_version": "1.1.0", "oci_version": "1.0.2",'): "duplicate key",
        text.replace('"exec_annotation"', '"exec_anotation"'): "exec_anotation: is not a known setting",
        text.replace('"uid": 65535', '"uid": "65535"'): "pause_container.uid: must be an integer",
        text.replace('"dns_label": "', '"dns_label": "(', 1): "common.dns_label: is not a regular expression",
        text.replace('"ListRoutesRequest": true', '"ListRoutesRequest": 1'): "ListRoutesRequest: must be true or false",
        text.replace('"default_env": ["PATH=', '"default_env": ["PATH'): "default_env[0]: must be NAME=value",
        "[]": "must be an object",
        "{": "not strict JSON",
    }
    for bad, needle in cases.items():
        with pytest.raises(SettingsError) as err:
            Settings.parse(bad, "s.json")
        assert needle in str(err.value) and "s.json" in str(err.value), str(err.value)
    path = tmp_path / "mine.json"
    path.write_text(text.replace('"cocoon"', '"cocoon-dev"'))
    assert Settings.load(path).doc["runtime_class_name"] == "cocoon-dev"
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.load(tmp_path / "absent.json")
    assert SETTINGS_FILE.name == "settings.json"


# --- random pods: refused with a PolicyGenError, or a policy that admits the pod's own requests -------------

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_word = st.text("abcxyz019-_./=$", min_size=0, max_size=8)
_var = st.sampled_from(["A", "B", "MODE", "PATH", "HOSTNAME", "X_1", "POD", "LANG"])
_cm = {"conf": {"mode": "m", "level": "2", "a": "x$(A)y"}}
_sec_data = {"creds": {"token": "t", "mode": "secret"}}


@st.composite
def _env_entry(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(_var)
    kind = draw(st.sampled_from(["value", "value", "cm", "secret", "field", "resource"]))
    if kind == "value":
        refs = st.sampled_from(["$(A)", "$$(A)", "x$(MODE)", "$(NOPE)"])
        return {"name": name, "value": draw(st.one_of(_word, _word, _word, refs))}
    if kind in ("cm", "secret"):
        own = "conf" if kind == "cm" else "creds"
        ref: dict[str, Any] = {"name": draw(st.sampled_from([own] * 6 + ["conf", "creds", "absent"])),
               "key": draw(st.sampled_from(["mode"] * 6 + ["level", "token", "nokey"]))}
        if draw(st.integers(0, 3)) == 0:
            ref["optional"] = True
        return {"name": name, "valueFrom": {"configMapKeyRef" if kind == "cm" else "secretKeyRef": ref}}
    if kind == "field":
        fp = draw(st.sampled_from(["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                                   "status.podIP", "status.hostIP", "spec.serviceAccountName",
                                   "metadata.labels['app']", "spec.bogus"]))
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": fp}}}
    return {"name": name, "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}


@st.composite
def _container(draw: st.DrawFn, name: str, volumes: list[str]) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": draw(st.sampled_from([WEB.reference, SIDE.reference]))}
    if draw(st.booleans()):
        c["command"] = draw(st.lists(_word, max_size=3))
    if draw(st.booleans()):
        c["args"] = draw(st.lists(st.one_of(_word, st.just("$(A)")), max_size=3))
    c["env"] = draw(st.lists(_env_entry(), max_size=5))
    if draw(st.booleans()):
        c["envFrom"] = [{"configMapRef": {"name": draw(st.sampled_from(["conf", "conf", "conf", "absent"])),
                                          "optional": draw(st.booleans())},
                         "prefix": draw(st.sampled_from(["", "P_"]))}]
    if draw(st.booleans()):
        c["workingDir"] = draw(st.sampled_from(["/", "/app", "/tmp/x"]))
    sc: dict[str, Any] = {}
    for key, strat in (("runAsUser", st.integers(0, 70000)), ("runAsGroup", st.integers(0, 70000)),
                       ("readOnlyRootFilesystem", st.booleans()), ("allowPrivilegeEscalation", st.booleans()),
                       ("privileged", st.sampled_from([False, False, False, True]))):
        if draw(st.booleans()):
            sc[key] = draw(strat)
    if draw(st.booleans()):
        caps = st.lists(st.sampled_from(["NET_ADMIN", "SYS_TIME", "CHOWN", "KILL", "ALL", "CAP_BPF"]), max_size=3)
        sc["capabilities"] = {"add": draw(caps), "drop": draw(caps)}
    c["securityContext"] = sc
    c["tty"] = draw(st.booleans())
    paths = draw(st.lists(st.sampled_from(["/data", "/etc/app", "/var/cache", "/srv/x"]), unique=True,
                          max_size=len(volumes)))
    c["volumeMounts"] = [{"name": draw(st.sampled_from(volumes)), "mountPath": p, "readOnly": draw(st.booleans())}
                         for p in paths] if volumes else []
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if draw(st.booleans()):
            c[probe] = {"exec": {"command": draw(st.lists(_word, min_size=1, max_size=3))}}
    return c


@st.composite
def _pod(draw: st.DrawFn) -> PodTemplate:
    vol_kinds: dict[str, dict[str, Any]] = {"empty": {"emptyDir": {}}, "mem": {"emptyDir": {"medium": "Memory"}},
                 "cm": {"configMap": {"name": "conf"}}, "gone": {"configMap": {"name": "absent", "optional": True}},
                 "sec": {"secret": {"secretName": "creds"}}, "proj": {"projected": {"sources": []}},
                 "host": {"hostPath": {"path": "/var/log"}}, "dapi": {"downwardAPI": {"items": []}}}
    vols = draw(st.lists(st.sampled_from(sorted(vol_kinds)), unique=True, max_size=4))
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "web"]), min_size=1, max_size=3, unique=True))
    n_init = draw(st.integers(0, len(names) - 1))
    containers = [draw(_container(n, vols)) for n in names]
    spec: dict[str, Any] = {"containers": containers[n_init:], "volumes": [{"name": v, **vol_kinds[v]} for v in vols]}
    if n_init:
        spec["initContainers"] = containers[:n_init]
    if draw(st.booleans()):
        spec["automountServiceAccountToken"] = draw(st.booleans())
    if draw(st.booleans()):
        spec["securityContext"] = {"supplementalGroups": draw(st.lists(st.integers(0, 5000), max_size=2)),
                                   "fsGroup": draw(st.integers(0, 5000)),
                                   "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}]}
    kind = draw(st.sampled_from(["Pod", "Deployment"]))
    return PodTemplate(source="rand.yaml", index=3, kind=kind, name="rnd", namespace="ns",
                       metadata={"labels": {"app": "rnd"}}, spec=spec, config_maps=_cm, secrets=_sec_data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pod(), st.booleans())
def test_random_pods_are_refused_or_admit_their_own_requests(pod: PodTemplate, lax: bool) -> None:
    try:
        data = policy_data(pod, IMAGES, SETTINGS, allow_privileged=lax, allow_host_path=lax)
    except PolicyGenError as exc:
        assert str(exc).startswith("rand.yaml: document 3 ("), str(exc)
        event("refused: " + str(exc).split(": ", 3)[-1][:30])
        return
    event("generated")
    for p in fresh(render(data)):
        reqs = admits_its_own_requests(p, pod)
        specs = {c["name"]: c for c in [*pod.spec.get("initContainers", []), *pod.spec["containers"]]}
        for name, req in reqs[1:]:
            for argv in cri.probe_commands(specs[name]):
                d = decide(p, "ExecProcessRequest", cri.exec_request(req, argv))
                assert d.allowed, (name, argv, d.prints)


_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 2**33) | st.text("ab:/$()=", max_size=4),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text("abn", max_size=3), kids,
                                                                               max_size=3), max_leaves=6)


def _paths(node: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*here, i))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_malformed_pod_specs_are_policy_gen_errors(data: st.DataObject) -> None:
    """Any value at any place of a good pod spec (or image config): a PolicyGenError naming the document, or a
    policy, never another exception."""
    spec = sample_spec()
    images = copy.deepcopy(IMAGES)
    which = data.draw(st.sampled_from(["spec", "spec", "spec", "image"]))
    root: Any = spec if which == "spec" else dict(images[WEB.reference].config)
    paths = [p for p in _paths(root) if p]
    path = data.draw(st.sampled_from(paths))
    node = root
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = data.draw(_json)
    if which == "image":
        images[WEB.reference] = ImageInfo(WEB.reference, WEB.pinned, root, WEB.layers)
    try:
        policy_data(sample_pod(spec), images, SETTINGS)
    except PolicyGenError as exc:
        assert str(exc).startswith("pod.yaml: document 0 (Pod shop/web-pod): "), str(exc)


def second_pod() -> PodTemplate:
    """A Deployment's pod: an init container, memory emptyDir, projected and downwardAPI volumes, no token
    mount, a terminal, runAsUser without runAsGroup (the image's group then unused), a service env reference."""
    spec = {
        "automountServiceAccountToken": False,
        "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels"}]}},
                    {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
        "initContainers": [{"name": "init", "image": SIDE.reference, "args": ["--once"],
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
        "containers": [{"name": "app", "image": WEB.reference, "tty": True,
                        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}],
                        "securityContext": {"runAsUser": 4242},
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                                         {"name": "info", "mountPath": "/etc/podinfo"},
                                         {"name": "tok", "mountPath": "/var/run/secrets/tokens"}],
                        "livenessProbe": {"exec": {"command": ["/bin/web", "--live"]}}}],
    }
    return PodTemplate(source="deploy.yaml", index=1, kind="Deployment", name="app", namespace="default",
                       metadata={"labels": {"app": "app"}}, spec=spec)


def test_a_second_pod_admits_its_own_requests() -> None:
    pod = second_pod()
    data = policy_data(pod, IMAGES, SETTINGS)
    assert [c["name"] for c in data["containers"]] == ["pause", "init", "app"]
    for p in fresh(render(data)):
        reqs = admits_its_own_requests(p, pod)
        app = reqs[2][1]
        assert (app.OCI.Process.User.UID, app.OCI.Process.User.GID) == (4242, 0)
        assert app.OCI.Process.Terminal and "APP=app" in app.OCI.Process.Env
        assert not any(m.destination.startswith("/var/run/secrets/kubernetes.io") for m in app.OCI.Mounts)
        assert [s.driver for s in app.storages] == ["blk", "blk", "ephemeral"]
        assert decide(p, "ExecProcessRequest", cri.exec_request(app, ["/bin/web", "--live"])).allowed
        d = decide(p, "ExecProcessRequest", cri.exec_request(app, ["/bin/web", "--live"], tty=True))
        assert_denied(d, "ExecProcessRequest", "process Terminal true is not false")
        assert "NODE=node-1" in app.OCI.Process.Env  # admitted above by the policy's NODE pattern
        node = list(app.OCI.Process.Env).index("NODE=node-1")
        d = decide(p, "CreateContainerRequest", mutated(app, set_(f"OCI.Process.Env.{node}", "NODE=not a node!")),
                   agent_pb2.CreateContainerRequest)
        assert_denied(d, "CreateContainerRequest", "environment variable NODE=not a node! is not allowed")
