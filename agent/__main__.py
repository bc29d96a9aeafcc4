"""``python -m agent`` (the image runs this file as a script): read ahead what start-up needs, run the daemon.

In the guest every first read of a file goes through virtio-blk, dm-verity
hashing and erofs decompression. A thread asks the kernel to read ahead the
largest pieces on the start-up path (the Rego engine, protobuf's runtime,
the agent's own modules) while the interpreter is still importing, so the
reads overlap with it. Advice only: errors are ignored. Not the crypto
bindings (14 MB): nothing before READY imports ``cryptography`` any more,
and under emulation hashing pages nobody reads is CPU the boot needs. (With
the rest of the start-up this lean, the read-ahead measured neither gain nor
loss under TCG: 20.7-21.7 s without, 20.9-22.1 s with.)
"""

import os
import threading
import time

_started = time.clock_gettime(time.CLOCK_BOOTTIME)  # the interpreter's own start-up ends here


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
        os.path.join(_site, "google", "protobuf")),)).start()

from agent import daemon  # noqa: E402

daemon.script_started = _started
raise SystemExit(daemon.main())
