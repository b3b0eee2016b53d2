"""A folder on a disk that a test can fill up and free again: a real "No space left on device".

As root (CI and the dev container), a 1 MiB tmpfs is mounted on the folder and `fill` writes a filler file until
the kernel refuses. Where mounting is not allowed, `fill` sets this process's file-size limit to 0 instead (with
SIGXFSZ ignored, every write then fails with EFBIG, "File too large") — a real size-limited file either way."""

import errno
import os
import resource
import signal
import subprocess
from pathlib import Path

FULL_ERRORS = ("No space left on device", "File too large")


class SmallDisk:
    def __init__(self, path: Path, size: str = "1m"):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
        self.mounted = subprocess.run(mount, capture_output=True).returncode == 0
        self.filler = path / ".filler"
        self.saved_limit = None

    def fill(self, leave: int = 0) -> None:
        """No room left for anything but `leave` bytes (tmpfs: in whole pages; the file-size limit: none at all)."""
        if not self.mounted:
            self.saved_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, self.saved_limit[1]))
            return
        chunk = b"\0" * (64 << 10)
        with open(self.filler, "ab", buffering=0) as handle:
            try:
                while True:
                    handle.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
            if leave:
                os.ftruncate(handle.fileno(), max(os.fstat(handle.fileno()).st_size - leave, 0))

    def free(self) -> None:
        if self.saved_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, self.saved_limit)
            self.saved_limit = None
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        self.free()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=True)
