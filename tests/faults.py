"""Real write failures for tests: no mocks, the kernel refuses the write."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def file_writes_refused(pid: int) -> Iterator[None]:
    """While inside, process ``pid`` cannot write a byte to any regular file: its file size
    limit (RLIMIT_FSIZE, what a quota or a full disk amounts to for the writer) is 0, so
    every write() fails with EFBIG (Python ignores SIGXFSZ). Sockets and reads still work.
    Linux; needs no privileges for a process of the same user."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
