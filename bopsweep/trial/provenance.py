"""Where a trial's numbers come from: the code, the software and the machine that made them.

Every trial stores this as its ``provenance`` (with the driver's fingerprint of the data it
read), so a number in a table can be traced, and ``bopsweep table`` says when the arms it
compares were run on different code, software or hardware:

* ``bopsweep``: the package's version; ``commit`` and ``dirty``: the git commit it was run
  from and whether the work tree had changes to tracked files, when run from a checkout
  (None otherwise: an installed package has no commit);
* ``python``, ``torch``, ``cuda`` (the CUDA torch was built with; None for a CPU build),
  ``cudnn`` (None where there is none);
* ``host``, and ``gpu``: the GPU's name on a CUDA device (None on the CPU).
"""

from __future__ import annotations

import contextlib
import functools
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from bopsweep import __version__


@functools.cache
def checkout() -> tuple[str | None, bool | None]:
    """The commit of the git checkout bopsweep runs from and whether tracked files changed;
    (None, None) for an installed package or without git. Read once per process (a trial
    forked from a warm-start zygote inherits the zygote's answer)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None, None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(root)]
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=10)
        head = run([*git, "rev-parse", "HEAD"], check=True).stdout.strip()
        changes = run([*git, "status", "--porcelain", "--untracked-files=no"], check=True)
        return head or None, bool(changes.stdout.strip())
    return None, None


def collect(device: str) -> dict[str, Any]:
    """This process's provenance for a trial on ``device`` (``cpu`` or ``cuda``)."""
    import torch

    commit, dirty = checkout()
    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "bopsweep": __version__,
        "commit": commit,
        "dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "host": socket.gethostname(),
        "gpu": torch.cuda.get_device_name() if on_gpu else None,
    }
