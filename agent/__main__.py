"""``python -m agent``: start reading the files start-up needs, then run the daemon.

In the guest every first read of a file goes through virtio-blk, dm-verity
hashing and erofs decompression; under emulation that, not the Python work,
is most of the agent's start-up. A thread asks the kernel to read ahead the
largest pieces (the Rego engine, protobuf's runtime, the crypto bindings,
the agent's own modules) while the interpreter is still importing, so the
reads overlap with it. Advice only: errors are ignored.
"""

import os
import threading


def _readahead(roots: tuple[str, ...]) -> None:
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                if name.endswith((".so", ".pyc")):
                    try:
                        fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_CLOEXEC)
                    except OSError:
                        continue
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                    except OSError:
                        pass
                    finally:
                        os.close(fd)


_here = os.path.dirname(os.path.abspath(__file__))
_site = os.path.join(os.path.dirname(_here), "site")
if os.path.isdir(_site):  # the image's layout (/usr/lib/cocoon/{agent,site})
    threading.Thread(target=_readahead, daemon=True, name="readahead", args=((
        _here, os.path.join(_site, "regorus"), os.path.join(_site, "google", "_upb"),
        os.path.join(_site, "google", "protobuf"), os.path.join(_site, "cryptography", "hazmat", "bindings")),)).start()

from agent.daemon import main  # noqa: E402

raise SystemExit(main())
