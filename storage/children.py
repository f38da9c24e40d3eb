"""Child processes that die with the process that started them (Linux).

A server started as a helper (moto for S3, a temporary Prefect server) must not outlive its
parent: ``kill -9`` of the parent runs no cleanup, and the child kept serving (and holding its
port and memory) until someone found it. ``die_with_parent()`` is a ``preexec_fn`` for
``subprocess.Popen`` that asks the kernel (``prctl(PR_SET_PDEATHSIG)``) to send the child
SIGTERM when its parent ends, however it ends.

The kernel ties the signal to the *thread* that started the child, so start such children
from a thread that lives as long as the process (the main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when this process dies; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # looked up here: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec
