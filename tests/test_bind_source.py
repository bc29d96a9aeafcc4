"""agent/storage.py bind_source: the agent's own rule for a container's bind-mount source, whatever the policy said.

Below the shared directories, or exactly one of the guest-owned socket paths it is given (the attestation
agent's directory, the sockets), read-only, of the listed kind and with no symlink on the way. Here on real
files in a temporary tree: a directory, a listening unix socket, symlinks to both, a regular file.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.guest_components import AA_SOCKET, AA_SOCKET_DIR, CDH_SOCKET, CONTAINER_SOURCES
from agent.storage import StorageError, bind_source

RO = ["rbind", "rprivate", "ro"]


@pytest.fixture
def guest() -> Iterator[tuple[tuple[str, ...], dict[str, str], Path]]:
    """(shared prefixes, guest sources as CONTAINER_SOURCES has them, the tree) in a short temporary directory
    (a unix socket's path has at most 107 bytes)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="bs-", dir="/tmp")).resolve()
    shared = tmp_path / "shared"
    (shared / "c1-0123456789abcdef-hosts").mkdir(parents=True)
    aa = tmp_path / "cc" / "attestation-agent"
    aa.mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(aa / "aa.sock"))
    sock.listen(1)
    (tmp_path / "cc" / "plain").write_text("not a socket")
    (tmp_path / "cc" / "link-dir").symlink_to(aa)
    (tmp_path / "cc" / "link.sock").symlink_to(aa / "aa.sock")
    (tmp_path / "cc" / "via").symlink_to(tmp_path / "cc")
    (shared / "c1-0123456789abcdef-etc").symlink_to("/etc")  # what a CopyFile of a symlink can leave
    (shared / "c1-0123456789abcdef-up").symlink_to("../cc")
    (shared / "c1-0123456789abcdef-aa").symlink_to(aa)
    (shared / "c1-0123456789abcdef-ok").symlink_to("c1-0123456789abcdef-hosts")
    sources = {str(aa): "directory", str(aa / "aa.sock"): "socket", str(tmp_path / "cc" / "plain"): "socket",
               str(tmp_path / "cc" / "link-dir"): "directory", str(tmp_path / "cc" / "link.sock"): "socket",
               str(tmp_path / "cc" / "via" / "attestation-agent"): "directory",
               str(tmp_path / "cc" / "absent.sock"): "socket", str(aa / "aa.sock" / "x"): "directory"}
    try:
        yield (str(shared),), sources, tmp_path
    finally:
        sock.close()
        shutil.rmtree(tmp_path)


def test_the_guest_sources_are_the_guest_components_paths() -> None:
    assert CONTAINER_SOURCES == {"/run/confidential-containers/attestation-agent": "directory",
                                 "/run/confidential-containers/attestation-agent/attestation-agent.sock": "socket",
                                 "/run/confidential-containers/cdh.sock": "socket"}
    assert AA_SOCKET == AA_SOCKET_DIR + "/attestation-agent.sock" and os.path.dirname(CDH_SOCKET) != AA_SOCKET_DIR


def test_a_guest_socket_or_its_directory_read_only(guest) -> None:  # type: ignore[no-untyped-def]
    prefixes, sources, tmp = guest
    for path in (tmp / "cc" / "attestation-agent", tmp / "cc" / "attestation-agent" / "aa.sock"):
        assert bind_source(str(path), RO, prefixes, sources) == str(path)
        assert bind_source(str(path), ["bind", "ro"], prefixes, sources) == str(path)
    for opts in (["rbind", "rprivate", "rw"], ["rbind", "rprivate"], ["rbind", "ro", "rw"], []):
        with pytest.raises(StorageError, match="only read-only"):
            bind_source(str(tmp / "cc" / "attestation-agent"), opts, prefixes, sources)


@pytest.mark.parametrize("name,why", [("plain", "not a socket"), ("link-dir", "not a directory"),
                                      ("link.sock", "not a socket"), ("via/attestation-agent", "not a directory"),
                                      ("absent.sock", "No such file"),
                                      ("attestation-agent/aa.sock/x", "Not a directory")])
def test_a_listed_path_must_be_what_it_is_listed_as(guest, name: str, why: str) -> None:  # type: ignore[no-untyped-def]
    """A regular file listed as a socket, a symlink to the real directory or socket, a path through a
    symlinked directory, a path that is not there: all refused, saying why."""
    prefixes, sources, tmp = guest
    with pytest.raises(StorageError, match=f"guest's .*{why}"):
        bind_source(str(tmp / "cc" / name), RO, prefixes, sources)


@pytest.mark.parametrize("rel", ["cc", "cc/attestation-agent/", "cc/attestation-agent/.", "cc/./attestation-agent",
                                 "cc//attestation-agent", "cc/attestation-agent/other",
                                 "cc/attestation-agent/../attestation-agent", "cc/via"])
def test_any_other_guest_path_is_outside(guest, rel: str) -> None:  # type: ignore[no-untyped-def]
    """The listed paths are whole strings: a parent, another spelling or a path below them is refused."""
    prefixes, sources, tmp = guest
    with pytest.raises(StorageError, match=r"outside the allowed directories|not in normal form"):
        bind_source(f"{tmp}/{rel}", RO, prefixes, sources)


def test_the_shared_directories_as_before(guest) -> None:  # type: ignore[no-untyped-def]
    prefixes, sources, _ = guest
    src = f"{prefixes[0]}/c1-0123456789abcdef-hosts"
    assert bind_source(src, ["rbind", "rprivate", "rw"], prefixes, sources) == src
    for bad in ("/etc", f"{prefixes[0]}/../cc", "relative/path", f"{prefixes[0]}x/y", "/run/x\0y"):
        with pytest.raises(StorageError):
            bind_source(bad, RO, prefixes, sources)


@pytest.mark.parametrize("name", ["etc", "up", "aa", "etc/passwd", "up/attestation-agent"])
def test_a_symlink_planted_in_the_shared_directory_leads_nowhere(guest, name: str) -> None:  # type: ignore[no-untyped-def]
    """The runtime follows symlinks in a bind source, so the check does too: out of the shared directory is
    refused (also to a listed guest path: only its exact name is admitted), a link that stays inside binds."""
    prefixes, sources, _ = guest
    with pytest.raises(StorageError, match="a symlink on the way leads to"):
        bind_source(f"{prefixes[0]}/c1-0123456789abcdef-{name}", RO, prefixes, sources)
    ok = f"{prefixes[0]}/c1-0123456789abcdef-ok"
    assert bind_source(ok, RO, prefixes, sources) == ok
    # '..' after the planted link: the kernel follows the link first (to its target's parent), so the
    # spelling, not its normal form, is what would be mounted: refused whatever it normalises to
    link = f"{prefixes[0]}/c1-0123456789abcdef-{name}"
    with pytest.raises(StorageError, match="not in normal form"):
        bind_source(f"{link}/../c1-0123456789abcdef-ok", RO, prefixes, sources)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="/.-ac\0", max_size=30),
       st.lists(st.sampled_from(["ro", "rw", "rbind", "bind", "rprivate", "", "rro"]), max_size=4))
def test_any_source_is_admitted_as_the_rule_says_or_refused(rel: str, opts: list[str]) -> None:
    """Never an exception but StorageError; admitted only below the prefix, or a listed path with ro."""
    prefixes, listed = ("/shared",), {"/cc/a": "directory", "/cc/s": "socket"}
    source = "/" + rel if rel[:1] != "/" and rel[:1] != "." else rel
    try:
        got = bind_source(source, opts, prefixes, listed)
    except StorageError:
        return
    below = got == "/shared" or got.startswith("/shared/")
    assert below and source == got, (source, got)
    assert source not in listed
