"""A trial's output folder: config, per-epoch and per-step metrics, the last checkpoint.

::

    DIR/config.json     the trial's configuration (plain values)
    DIR/metrics.csv     one row per finished epoch
    DIR/steps.csv       one row per logged window of steps
    DIR/timing.csv      seconds per epoch (kept apart so metrics.csv is reproducible)
    DIR/checkpoint.pt   model and optimizer state after the last finished epoch
    DIR/summary.json    final and best accuracy, written when the run ends

Rows are appended (and flushed to disk) before the checkpoint is replaced, so the CSVs always
reach at least the checkpoint's epoch; on resume, rows past it are dropped. The checkpoint holds
tensors and plain values only and loads with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from bopsweep.errors import UserError
from bopsweep.files import atomic_open, atomic_write_text, remove_stale_temps
from bopsweep.folders import read_marker, write_marker
from bopsweep.metric_keys import EPOCH
from bopsweep.trial.config import TrialConfig
from bopsweep.trial.legacy_c2i import C2I_MEANING, complement_rows

CONFIG, METRICS, STEPS, TIMING = "config.json", "metrics.csv", "steps.csv", "timing.csv"
CHECKPOINT, SUMMARY = "checkpoint.pt", "summary.json"
PENDING_METRICS = "metrics.c2i-upgrade.csv"  # metrics.csv converted, until it replaces it
RUN_FILES = (CONFIG, METRICS, STEPS, TIMING, CHECKPOINT, SUMMARY, PENDING_METRICS)  # a run's
C2I_KEY = "c2i"  # in a checkpoint: what its metrics.csv's C2I columns mean


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def open(self, config: TrialConfig, resume: bool) -> dict[str, Any] | None:
        """Prepare the folder; on resume, return the last checkpoint (None: start over)."""
        if resume:
            if not (self.path / CONFIG).is_file():
                raise UserError(f"{self.path} holds no bopsweep run to resume (no {CONFIG})")
            state = self._upgrade_c2i(self.load_checkpoint())
            epoch = state["epoch"] if state is not None else 0
            for name in (METRICS, STEPS, TIMING):
                self._truncate(name, epoch)
            if state is not None and not self._records_every_epoch(epoch):
                # rows lost or damaged: the checkpoint's run can no longer be told epoch by
                # epoch, so it is trained again from the start (the same seeds, the same run)
                print(
                    f"{self.path / METRICS} does not hold every epoch 1..{epoch} of the "
                    "checkpoint; training again from epoch 1",
                    file=sys.stderr,
                )
                (self.path / CHECKPOINT).unlink()
                for name in (METRICS, STEPS, TIMING):
                    self._truncate(name, 0)
                state = None
        else:
            if self.path.exists() and not self.path.is_dir():
                raise UserError(f"{self.path} is a file; --out needs a folder (new or empty)")
            if (self.path / METRICS).exists() or (self.path / CHECKPOINT).exists():
                raise UserError(
                    f"{self.path} already holds a run; continue it with --resume "
                    f"{self.path} or choose another --out"
                )
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create the run folder {self.path}: {e.strerror}") from None
            state = None
        # what a killed write of this trial left (a checkpoint's worth each); one trial process
        # writes here at a time, and a live writer's temporary is never taken (files.py)
        remove_stale_temps(self.path)
        config.save(self.path / CONFIG)
        return state

    def adopt(self, marker: dict[str, Any]) -> bool:
        """Make the folder the trial's that ``marker`` describes (:func:`~bopsweep.folders.
        trial_marker`) before its process starts. A folder marked with the same marker is kept:
        the trial resumes there. A run any other trial left (another study's, one on other
        data, one with no marker) is removed first, never resumed; True if one was. A folder
        that a live trial process holds is left as it is: that process's (its lock, below)."""
        if read_marker(self.path) == marker:
            return False
        cleared = False
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / ".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a live process holds it: the trial process decides (folder_owner)
            for name in RUN_FILES:
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    (self.path / name).unlink()  # a file: a folder there is no run's
                    cleared = True
            write_marker(self.path, **marker)
        return cleared

    def _upgrade_c2i(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """A run checkpointed before C2I had the paper's meaning (its checkpoint lacks
        :data:`C2I_KEY`): its metrics.csv's C2I columns become 1 − v. Three steps, each atomic,
        that a kill at any point leaves to be finished, never done twice: the converted rows to
        :data:`PENDING_METRICS`, the checkpoint marked, the rows moved into place."""
        pending = self.path / PENDING_METRICS
        if state is None:
            pending.unlink(missing_ok=True)
            return state
        if state.get(C2I_KEY) != C2I_MEANING:
            rows = complement_rows(self.history())
            if rows:
                with atomic_open(pending, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]), restval="")
                    writer.writeheader()
                    writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
            state = {**state, C2I_KEY: C2I_MEANING}
            self.save_checkpoint(state)
        if pending.exists():
            os.replace(pending, self.path / METRICS)
        return state

    def _records_every_epoch(self, epoch: int) -> bool:
        """Whether metrics.csv holds exactly one row for each epoch 1..``epoch``."""
        return [row[EPOCH] for row in self.history()] == list(range(1, epoch + 1))

    # --- rows ---------------------------------------------------------------------------------
    def append(self, row: dict[str, Any], step_rows: list[dict[str, Any]], seconds: float) -> None:
        self._append(METRICS, [row])
        self._append(STEPS, step_rows)
        self._append(TIMING, [{EPOCH: row[EPOCH], "seconds": seconds}])

    def history(self) -> list[dict[str, Any]]:
        return read_rows(self.path / METRICS)

    def step_history(self) -> list[dict[str, Any]]:
        return read_rows(self.path / STEPS)

    def timings(self) -> list[dict[str, Any]]:
        return read_rows(self.path / TIMING)

    def _append(self, name: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        path = self.path / name
        new = not path.exists() or path.stat().st_size == 0
        fieldnames = list(rows[0])
        if not new:
            fieldnames = self._widen(path, fieldnames)
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames, restval="")
            if new:
                writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def _widen(path: Path, fieldnames: list[str]) -> list[str]:
        """The file's columns, with ``fieldnames`` it lacks added (a run resumed by a newer
        bopsweep that logs more columns: the file is rewritten whole, older rows blank there)."""
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            missing = [k for k in fieldnames if k not in header]
            if not missing:
                return header
            rows = list(reader)
        with atomic_open(path, "w", newline="") as out:  # Ctrl-C here keeps the old file
            writer = csv.DictWriter(out, fieldnames=header + missing, restval="")
            writer.writeheader()
            writer.writerows(rows)
        return header + missing

    def _truncate(self, name: str, epoch: int) -> None:
        path = self.path / name
        if not path.exists():
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fieldnames = reader.fieldnames or []
            # a row cut short by a kill mid-write (missing cells) or damaged (a cell that is no
            # number): dropped too, and then missed by _records_every_epoch
            kept = [r for r in reader if _readable(r) and _epoch(r) <= epoch]
        with atomic_open(path, "w", newline="") as f:  # Ctrl-C here keeps the old file
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(kept)

    # --- checkpoint and summary ------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch  # here: the driver marks and reads run folders without importing torch

        try:
            with atomic_open(self.path / CHECKPOINT, "wb") as f:
                torch.save(state, f)
        except RuntimeError as e:  # torch reports a failed write (a full disk) this way
            if isinstance(e.__context__, KeyboardInterrupt):  # Ctrl-C during the write: the
                raise KeyboardInterrupt from None  # previous checkpoint stays, whole
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise OSError(f"cannot write {self.path / CHECKPOINT}: {e}") from e

    def load_checkpoint(self) -> dict[str, Any] | None:
        import torch  # here: the driver marks and reads run folders without importing torch

        path = self.path / CHECKPOINT
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, foreign or corrupt file: the user's to fix
            raise UserError(
                f"cannot read checkpoint {path} ({type(e).__name__}); delete it to "
                "restart the run from scratch"
            ) from None
        if not _is_checkpoint(state):
            raise UserError(
                f"{path} is not a bopsweep checkpoint (it needs epoch and step counts and the "
                "model's and both optimizers' states); delete it to restart the run from scratch"
            )
        return state

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / SUMMARY, json.dumps(summary, indent=2) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A metrics CSV back as dicts of numbers (blank cells → None)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _is_checkpoint(state: Any) -> bool:
    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    return (
        isinstance(state, dict)
        and count(state.get("epoch"))
        and count(state.get("step"))
        and all(isinstance(state.get(k), dict) for k in ("model", "binary_opt", "real_opt"))
    )


def _readable(row: dict[str | None, Any]) -> bool:
    """A CSV row whose every cell is present and reads as a number (or is blank)."""
    if None in row or None in row.values():
        return False
    try:
        for value in row.values():
            _parse(value)
    except ValueError:
        return False
    return True


def _epoch(row: dict[str, Any]) -> float:
    try:
        return int(row[EPOCH])
    except (TypeError, ValueError):  # a damaged row: dropped with those past the checkpoint
        return math.inf


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def _parse(text: str) -> Any:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def resumed_config(folder: Path, given: dict[str, Any]) -> TrialConfig:
    """The saved configuration of the run in ``folder``, to continue it; of the trial settings
    only ``epochs`` may change (a longer run)."""
    if set(given) - {"epochs"}:
        raise UserError(
            "--resume continues with the run's saved settings; only --epochs "
            f"may change (got --{', --'.join(sorted(set(given) - {'epochs'}))})"
        )
    if not (folder / CONFIG).is_file():
        raise UserError(f"{folder} holds no bopsweep run to resume (no {CONFIG})")
    config = TrialConfig.load(folder / CONFIG)
    if "epochs" in given:
        config = TrialConfig.from_dict({**config.to_dict(), "epochs": given["epochs"]})
    return config
