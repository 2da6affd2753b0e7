"""How a trial ended, decided from what its process left behind. Pure: no process, no database.

The rules:

* pruned by the driver (and not already done) → PRUNED, with the epoch it was pruned at;
* exit 0 after a ``done`` message → COMPLETE, valued at the final validation accuracy; so
  too a process that said ``done`` as the driver's stop (pruning) reached it;
* exit ``EXIT_DIVERGED`` → FAIL "diverged": a result of the configuration, never retried;
* exit ``EXIT_USER_ERROR`` → FAIL "error": bad input, never retried;
* exit ``EXIT_BUSY`` → FAIL "busy": the trial's folder stayed another attempt's (a process of
  a driver that lost the trial, still alive): re-queued at the same attempt, always;
* exit 0 after ``done`` without every epoch recorded → FAIL "incomplete", re-queued (the
  retry records the epochs it finds in the checkpoint folder and trains what is missing);
* anything else (a crash, a signal, out of memory) → FAIL "crash" or "oom", re-queued while
  ``attempt < max_retries``; the retry continues from the trial's last checkpoint.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bopsweep.attr_keys import FAIL_REASON, FAILURE, PRUNED_AT, REQUEUED, SUMMARY_ATTRS
from bopsweep.driver.protocol import EXIT_BUSY, EXIT_DIVERGED, EXIT_USER_ERROR
from bopsweep.store.failures import innermost


@dataclass(frozen=True)
class Ending:
    """A trial's end: its Optuna state, value and user attributes, and whether to re-queue."""

    state: str  # "COMPLETE", "PRUNED" or "FAIL"
    value: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    reason: str = ""
    retry: bool = False

    @property
    def next_attempt_used(self) -> bool:
        """Whether its retry uses up one of --max-retries (a busy folder does not)."""
        return self.failure != "busy"

    @property
    def event(self) -> str:
        """What the display calls it."""
        if self.state == "FAIL":
            return "retry" if self.retry else "fail"
        return self.state.lower()


def judge(
    returncode: int | None,
    last_message: dict[str, Any] | None,
    pruned_at: int | None,
    stderr_tail: Iterable[str],
    attempt: int,
    max_retries: int,
) -> Ending:
    """The end of a trial whose process exited with ``returncode`` after ``last_message``."""
    message = last_message or {}
    if pruned_at is not None and message.get("type") != "done":
        return Ending("PRUNED", attrs={PRUNED_AT: pruned_at})
    # done is final: a stop the driver sent as it arrived (pruning) cannot undo the training
    if message.get("type") == "done" and (returncode == 0 or pruned_at is not None):
        summary = message["summary"]
        attrs = {k: summary[k] for k in SUMMARY_ATTRS if k in summary}
        return Ending("COMPLETE", value=summary["final_val_acc"], attrs=attrs)
    if returncode == EXIT_BUSY:
        reason = message.get("reason", "its folder is in use by another attempt")
        attrs = {FAILURE: "busy", FAIL_REASON: reason, REQUEUED: True}
        return Ending("FAIL", attrs=attrs, failure="busy", reason=reason, retry=True)
    if returncode == EXIT_DIVERGED:
        failure, reason = "diverged", message.get("reason", "the loss became NaN")
    elif returncode == EXIT_USER_ERROR:
        failure, reason = "error", message.get("reason", "bad input")
    else:
        reason = crash_reason(returncode, stderr_tail)
        failure = "oom" if "out of memory" in reason.lower() else "crash"
    retry = failure in ("crash", "oom") and attempt < max_retries
    attrs = {FAILURE: failure, FAIL_REASON: reason, REQUEUED: retry}
    return Ending("FAIL", attrs=attrs, failure=failure, reason=reason, retry=retry)


def incomplete(missing: list[int], attempt: int, max_retries: int) -> Ending:
    """A trial that said it was done without every epoch 1..N recorded: never COMPLETE."""
    shown = ", ".join(map(str, missing[:10])) + (", …" if len(missing) > 10 else "")
    reason = f"done, but epochs {shown} were not recorded"
    retry = attempt < max_retries
    attrs = {FAILURE: "incomplete", FAIL_REASON: reason, REQUEUED: retry}
    return Ending("FAIL", attrs=attrs, failure="incomplete", reason=reason, retry=retry)


def crash_reason(returncode: int | None, stderr_tail: Iterable[str]) -> str:
    """The signal that killed a process, else the last line it wrote to stderr."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"killed by {name}"
    lines = [line.strip() for line in stderr_tail if line.strip()]
    return lines[-1][:500] if lines else f"exited with code {returncode}"


def unstarted(attempt: int, max_retries: int, interrupted: bool) -> int | None:
    """A trial whose process could not be started: the attempt to re-queue it at, or None.

    Ctrl-C always re-queues at the same attempt; other causes count as a crash.
    """
    if interrupted:
        return attempt
    return attempt + 1 if attempt < max_retries else None


def describe(e: BaseException) -> str:
    """An exception in one line, for a trial's failure reason."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def cannot_be_written(e: BaseException, url: str) -> bool:
    """A database error that waiting will not cure: a full disk, or any SQLite error but a
    busy lock (a local file has no outages to ride out)."""
    text = str(innermost(e)).lower()  # Optuna's wrapper names no cause
    if "disk is full" in text or "no space left" in text or "diskfull" in text:
        return True
    return url.startswith("sqlite") and not ("locked" in text or "busy" in text)
