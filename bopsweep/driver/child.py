"""A trial process: trains one configuration and streams its metrics to the driver.

Started by the driver (:mod:`bopsweep.driver.process`); what it reads and writes is
:mod:`bopsweep.driver.protocol`. It is a pure function of its configuration: it trains in
``RUN_DIR``, continuing from the checkpoint there, if any.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from bopsweep.driver.protocol import EXIT_DIVERGED, EXIT_USER_ERROR, encode


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the driver dies, so no orphan keeps training."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str]) -> int:
    run_dir, threads = Path(argv[0]), int(argv[1])
    expected_parent = int(argv[2]) if len(argv) > 2 else None
    _die_with_parent()
    if expected_parent is not None and os.getppid() != expected_parent:
        return 1  # the driver died before we could ask to follow it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    channel: TextIO = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the channel
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        channel.write(encode(message))

    import torch

    from bopsweep.errors import UserError
    from bopsweep.run_dir import CONFIG
    from bopsweep.studies.config import TrialConfig
    from bopsweep.train import TrialDiverged, run_trial

    torch.set_num_threads(max(1, threads))
    config = TrialConfig.from_dict(json.loads(sys.stdin.read()))
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            send({"type": "error", "reason": f"{run_dir} is in use by another trial process"})
            return EXIT_USER_ERROR
        try:
            summary = run_trial(
                config,
                run_dir,
                resume=(run_dir / CONFIG).exists(),
                on_resume=lambda rows, steps: send(
                    {"type": "resumed", "rows": rows, "steps": steps}
                ),
                on_epoch=lambda row, steps: send({"type": "epoch", "row": row, "steps": steps}),
                on_progress=lambda p: send({"type": "progress", **asdict(p)}),
            )
        except TrialDiverged as e:
            send({"type": "diverged", "reason": str(e)})
            return EXIT_DIVERGED
        except UserError as e:
            send({"type": "error", "reason": str(e)})
            return EXIT_USER_ERROR
    send({"type": "done", "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
