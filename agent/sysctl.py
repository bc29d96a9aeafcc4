"""Namespaced sysctls of a container spec: which ones a container may set, and who sets them.

Containers share the VM's network namespace (ocispec drops the spec's
``network`` namespace, as Kata's agent does), so runc refuses every
``net.*`` key ("not allowed in host network namespace"). Kata's agent
accepts them because that namespace is the pod's (rustjail validator.rs
``sysctl``: "the network ns is shared with the guest") and writes them to
``/proc/sys/<key with '.' -> '/'>`` (container.rs ``set_sysctls``). cocoon
does the same: the agent writes ``net.*`` keys into its (= the pod's)
network namespace before the runtime starts the container, and leaves the
IPC and UTS keys to the runtime, which applies them inside the container's
own namespaces. Kata's classification is kept: the IPC keys (``kernel.msg*``,
``kernel.sem``, ``kernel.shm*``, ``fs.mqueue.*``) need an ``ipc`` namespace,
``kernel.domainname`` a ``uts`` one, ``kernel.hostname`` is the spec's
Hostname, anything else is refused. One check Kata does not make: a
``net.*`` key must exist in a fresh network namespace, which is the
kernel's own definition of "per network namespace"; global keys
(``net.core.netdev_max_backlog``, ...) would change the whole guest.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import threading

from agent.errors import AgentError

CLONE_NEWNET = 0x40000000
# Kata rustjail validator.rs SYSCTLS: the keys of the IPC namespace (plus the fs.mqueue.* prefix).
IPC_KEYS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                      "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})
KEY = re.compile(r"[a-z0-9_]+(\.[A-Za-z0-9_-]+)+")  # fullmatch: "$" would let a final newline in
VALUE = re.compile(r"[\x20-\x7e\t]{1,1024}")
MAX_KEY = 255
PROC_SYS = "/proc/sys"

_libc = ctypes.CDLL(None, use_errno=True)
_known: dict[str, bool] = {}
_known_lock = threading.Lock()


class SysctlError(AgentError):
    """A sysctl a container may not set, or one that could not be written."""


def split(sysctls: dict[str, str], namespaces: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(keys the runtime applies in the container's namespaces, ``net.*`` keys the agent applies)."""
    runtime: dict[str, str] = {}
    network: dict[str, str] = {}
    for key in sorted(sysctls):
        value = sysctls[key]
        if len(key) > MAX_KEY or not KEY.fullmatch(key):
            raise SysctlError(f"sysctl {key[:80]!r} is malformed: dotted names of letters, digits, '_' and '-' "
                              "only (no '/', no empty or '..' parts)")
        if not VALUE.fullmatch(value):
            raise SysctlError(f"sysctl {key} has a malformed value: 1 to 1024 printable characters, one line")
        if key in IPC_KEYS or key.startswith("fs.mqueue."):
            if "ipc" not in namespaces:
                raise SysctlError(f"sysctl {key} belongs to the IPC namespace and the spec asks for none")
            runtime[key] = value
        elif key == "kernel.domainname":
            if "uts" not in namespaces:
                raise SysctlError(f"sysctl {key} belongs to the UTS namespace and the spec asks for none")
            runtime[key] = value
        elif key == "kernel.hostname":
            raise SysctlError("sysctl kernel.hostname is not set this way: the spec's Hostname is")
        elif key.startswith("net."):
            network[key] = value
        else:
            raise SysctlError(f"sysctl {key} is not namespaced: a container may not change it for the whole guest")
    return runtime, network


def _path(key: str) -> str:
    return os.path.join(PROC_SYS, *key.split("."))


def per_netns(key: str) -> bool:
    """Does ``key`` exist in a network namespace other than the initial one?

    Asked of the kernel: a short-lived thread unshares its own network
    namespace (namespaces are per thread; the agent's other threads keep
    theirs) and looks the key up there; the thread and its namespace then
    go away. Cached per key: the answer is the kernel's and does not change.
    """
    with _known_lock:
        if key in _known:
            return _known[key]
    answer: list[bool] = []
    errors: list[int] = []

    def probe() -> None:
        if _libc.unshare(CLONE_NEWNET) != 0:
            errors.append(ctypes.get_errno())
            return
        answer.append(os.path.isfile(_path(key)))

    t = threading.Thread(target=probe, name="sysctl-probe", daemon=True)
    t.start()
    t.join()
    if errors or not answer:
        raise SysctlError(f"sysctl {key}: cannot tell whether it is per network namespace "
                          f"({os.strerror(errors[0]) if errors else 'no answer'})")
    with _known_lock:
        _known[key] = answer[0]
    return answer[0]


def apply_network(sysctls: dict[str, str]) -> None:
    """Write ``net.*`` keys (checked by ``split``) into the agent's network namespace, the pod's."""
    for key in sorted(sysctls):
        if not per_netns(key):
            raise SysctlError(f"sysctl {key} is not per network namespace (or does not exist in this kernel): "
                              "a container may not change it for the whole guest")
    for key, value in sorted(sysctls.items()):
        try:
            fd = os.open(_path(key), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise SysctlError(f"sysctl {key}: {exc.strerror}") from None
        try:
            os.write(fd, value.encode())
        except OSError as exc:
            raise SysctlError(f"sysctl {key}={value}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
