"""What a trial process and its driver say to each other.

The driver starts ``python -m bopsweep.driver.child RUN_DIR THREADS DRIVER_PID`` (or has the
slot's zygote fork the same, :mod:`bopsweep.driver.zygote`) and writes the trial's
configuration as JSON to its stdin. The child writes one JSON message per line to its
stdout (everything else it prints goes to stderr)::

    {"type": "provenance", "provenance": {...}}         first: its code, software, machine
    {"type": "resumed", "rows": [...], "steps": [...]}  epochs done before, from the checkpoint
    {"type": "epoch", "row": {...}, "steps": [...]}   every epoch
    {"type": "progress", "epoch": E, "step": S, ...}   every few steps
    {"type": "done", "summary": {...}}                  then exit 0
    {"type": "diverged", "reason": "..."}               then exit EXIT_DIVERGED
    {"type": "error", "reason": "..."}                  bad input; exit EXIT_USER_ERROR
    {"type": "busy", "reason": "..."}                   its folder is still another
                                                        attempt's; exit EXIT_BUSY

Any other exit (a crash, out of memory, a kill) is the driver's to record and retry.

A stacked trial process (``--stack K``) reads ``{"stack": [{"config": {...}, "run_dir":
"..."}, ...]}`` as its first line and keeps reading its stdin for the driver's commands,
``{"stop": k}`` (member k is pruned: it stops after its epoch in progress and answers
``{"type": "stopped"}``). Each of its messages but ``provenance`` (every member's) carries
``"member": k``, and each member ends
with its own ending message while the others go on; the process exits 0 once all have ended.
"""

from __future__ import annotations

import json
from typing import Any

CHILD_MODULE = "bopsweep.driver.child"
EXIT_DIVERGED = 3
EXIT_USER_ERROR = 2
EXIT_BUSY = 4  # the trial's folder stayed another live attempt's: queued again, no retry used
ENDINGS = ("done", "diverged", "error", "stopped", "busy")  # a trial's last message


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message) + "\n"


def decode(line: str) -> dict[str, Any] | None:
    """A message, or None for a line that is not one (the channel carries JSON lines only)."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    return message if isinstance(message, dict) and "type" in message else None
