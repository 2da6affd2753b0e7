"""A trial process: trains one configuration (or a stack of them, ``--stack``) and streams its
metrics to the driver.

Started by the driver (:mod:`bopsweep.driver.process`); what it reads and writes is
:mod:`bopsweep.driver.protocol`. It is a pure function of its configuration: it trains in
``RUN_DIR``, continuing from the checkpoint there, if any.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from bopsweep.driver import folder_owner
from bopsweep.driver.protocol import EXIT_BUSY, EXIT_DIVERGED, EXIT_USER_ERROR, encode
from bopsweep.errors import UserError
from bopsweep.trial.config import TrialConfig
from bopsweep.trial.provenance import collect

Send = Callable[[dict[str, Any]], None]


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

    # here, not at the top: torch (and the training code below) once stdout is redirected
    import torch

    torch.set_num_threads(max(1, threads))
    job = json.loads(sys.stdin.readline())
    device = str((job["stack"][0]["config"] if "stack" in job else job).get("device", "cpu"))
    send({"type": "provenance", "provenance": collect(device)})  # every member's, in a stack
    if "stack" not in job:
        owner, take_over = job.pop("owner", None), job.pop("take_over", False)
        guarded = _guarded(send, [(run_dir, owner)])
        return _run_one(TrialConfig.from_dict(job), run_dir, owner, take_over, guarded)
    stopped: set[int] = set()
    threading.Thread(target=_read_commands, args=(stopped,), daemon=True).start()
    members = [(TrialConfig.from_dict(m["config"]), Path(m["run_dir"])) for m in job["stack"]]
    owners = [m.get("owner") for m in job["stack"]]
    takes = [bool(m.get("take_over")) for m in job["stack"]]
    guarded = _guarded(send, [(d, o) for (_, d), o in zip(members, owners, strict=True)])
    return _run_stack(members, owners, takes, guarded, stopped)


def _guarded(send: Send, folders: list[tuple[Path, str | None]]) -> Send:
    """``send``, which first checks that no other attempt has asked for a folder of this
    process (:mod:`~bopsweep.driver.folder_owner`): if one has, this process lost its trial
    and leaves at once, before it writes the folder again (EXIT_BUSY). Every epoch ends with
    a message, and progress is sent every few steps, so it notices within a few steps."""

    def guarded(message: dict[str, Any]) -> None:
        # "busy": this process never got the folder, whose owner is someone else's
        if message["type"] != "busy" and any(folder_owner.taken_over(d, o) for d, o in folders):
            sys.exit(EXIT_BUSY)
        send(message)

    return guarded


def _busy(run_dir: Path) -> str:
    return (
        f"{run_dir} is still in use by the process of an earlier attempt; queued again "
        "(no retry used)"
    )


def _run_one(
    config: TrialConfig, run_dir: Path, owner: str | None, take_over: bool, send: Send
) -> int:
    # here, not at the top: they import torch, which main imports once stdout is redirected
    from bopsweep.trial.run_dir import CONFIG
    from bopsweep.trial.train import TrialDiverged, run_trial

    with contextlib.ExitStack() as held:
        if not folder_owner.acquire([run_dir], [owner], held, [take_over])[0]:
            send({"type": "busy", "reason": _busy(run_dir)})
            return EXIT_BUSY
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


def _run_stack(
    members: list[tuple[TrialConfig, Path]],
    owners: list[str | None],
    takes: list[bool],
    send: Send,
    stopped: set[int],
) -> int:
    """Members of a stack: every message carries ``"member": k``; each ends with its own
    message (done, diverged, error) unless stopped (pruned). Exit 0 once all have ended; a
    crash ends the process, and the driver judges each member without an ending by its code."""
    # here, not at the top: they import torch, which main imports once stdout is redirected
    from bopsweep.trial.run_dir import CONFIG
    from bopsweep.trial.train import TrialDiverged, run_stack

    def end(k: int, result: object) -> None:
        if isinstance(result, TrialDiverged):
            send({"type": "diverged", "reason": str(result), "member": k})
        elif isinstance(result, UserError):
            send({"type": "error", "reason": str(result), "member": k})
        else:
            send({"type": "done", "summary": result, "member": k})

    def is_stopped(k: int) -> bool:
        if k in stopped:
            send({"type": "stopped", "member": k})
        return k in stopped

    with contextlib.ExitStack() as held:
        got = folder_owner.acquire([d for _, d in members], owners, held, takes)
        free = [k for k, g in enumerate(got) if g]
        for k in (k for k, g in enumerate(got) if not g):
            send({"type": "busy", "reason": _busy(members[k][1]), "member": k})
        if not free:
            return EXIT_BUSY
        try:
            run_stack(
                [members[k][0] for k in free],
                [members[k][1] for k in free],
                resume=[(members[k][1] / CONFIG).exists() for k in free],
                on_resume=lambda i, rows, steps: send(
                    {"type": "resumed", "rows": rows, "steps": steps, "member": free[i]}
                ),
                on_epoch=lambda i, row, steps: send(
                    {"type": "epoch", "row": row, "steps": steps, "member": free[i]}
                ),
                on_progress=lambda i, p: send({"type": "progress", **asdict(p), "member": free[i]}),
                on_end=lambda i, result: end(free[i], result),
                stopped=lambda i: is_stopped(free[i]),
            )
        except UserError as e:  # refused as a whole (members that cannot share, bad data)
            for k in free:
                end(k, e)
            return EXIT_USER_ERROR
    return 0


def _read_commands(stopped: set[int]) -> None:
    """The driver's commands to a running stack, one JSON line each: ``{"stop": k}`` drops
    member k after its epoch in progress (pruning)."""
    for line in sys.stdin:
        with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
            stopped.add(int(json.loads(line)["stop"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
