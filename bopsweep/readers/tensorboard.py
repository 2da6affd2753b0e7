"""TensorBoard event files of bopsweep's trials: one TensorBoard run per trial.

Written by ``bopsweep train --tensorboard DIR`` (live, as epochs finish), by every study command
with ``--tensorboard DIR`` (live, from the driver, which alone sees every trial's epochs) and by
``bopsweep export --tensorboard DIR`` (afterwards, from the database). ``tensorboard --logdir
DIR`` then shows them side by side::

    DIR/STUDY/NUMBER-LABEL/   one run per trial of a study: its Optuna number and label
    DIR/RUN/                  one run per ``bopsweep train``: the name of its --out folder

A run holds, at step = the epoch (1-based, as bopsweep counts), the scalars of the trial's
metric rows (as 32-bit floats, TensorBoard's scalars: its fast loader drops 64-bit ones):

    accuracy/train, accuracy/val, loss/train, loss/val  the epoch's training and validation
    accuracy/val_best                   the best validation accuracy so far (binary kernels:
                                        not a two-step run's step 1)
    pi/network, pi/LAYER                π_t of the epoch, network-wide and per layer
    c2i/network, c2i/LAYER              the C2I ratio after the epoch (if the rows have it)
    hyperparameters/gamma, …sigma, …tau, …lr   the values in force (those the trial uses)

and, for TensorBoard's HParams tab, the hparams plugin's three summaries: the experiment (every
hyperparameter name and type, and the metrics ``accuracy/val`` as the final and
``accuracy/val_best`` as the best validation accuracy: the HParams tab reads a metric's last
value), the session start (this trial's hyperparameters: its configuration as
:func:`trial_hparams` flattens it) and, once the trial has ended, the session end with its
status (COMPLETE: success, FAIL: failure, PRUNED: unknown, since TensorBoard has no "pruned").
The experiment summary is the same in every run (TensorBoard reads the first it finds), so
every trial of every study can be compared in one HParams table.

A trial appears from its first finished epoch. A study's retried trial is a new Optuna trial, so
a new run, which holds its whole curve (the epochs it continued from included); the earlier
attempt's run keeps its epochs and ends as a failure. ``train --resume`` continues its run,
writing only the epochs it does not hold yet.

The sinks for live training (:class:`TrainBoard`, :class:`StudyBoard`) never fail a trial: the
first error writing TensorBoard files is said once, and writing stops (``bopsweep export
--tensorboard`` writes the runs again from the database later).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep.errors import UserError
from bopsweep.files import (
    check_folder_target,
    remove_stale_temps,
)
from bopsweep.folders import NAME_MAX, inside, name_component
from bopsweep.metric_keys import (
    C2I,
    EPOCH,
    PI,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
    layer_column,
)
from bopsweep.outputs import check_not_own_state
from bopsweep.trial.config import TrialConfig

# tensorboard and torch: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    pass

# metric row key → scalar tag; pi_LAYER and c2i_LAYER go to pi/LAYER and c2i/LAYER
from bopsweep.readers.tensorboard_hparams import (
    BEST_TAG,
    STATUS,
    experiment_summary,
    session_end_summary,
    session_start_summary,
    trial_hparams,
)

ROW_TAGS = {
    TRAIN_ACC: "accuracy/train",
    VAL_ACC: "accuracy/val",
    TRAIN_LOSS: "loss/train",
    VAL_LOSS: "loss/val",
    PI: "pi/network",
    C2I: "c2i/network",
    "gamma": "hyperparameters/gamma",
    "sigma": "hyperparameters/sigma",
    "tau": "hyperparameters/tau",
    "lr": "hyperparameters/lr",
}
LAYER_PREFIXES = (layer_column(PI, ""), layer_column(C2I, ""))
# the HParams tab's metrics: tag → display name (it shows each tag's last value)
# a trial's Optuna state → the hparams plugin's session status (no "pruned" there)
EVENT_FILES = "events.out.tfevents.*"
MAX_NAME = 100  # characters of a run's folder name


# --- names and checks -------------------------------------------------------------------------
def check_logdir(path: Path, database: Path | None = None, also: Iterable[Path] = ()) -> None:
    """``--tensorboard DIR`` must be a folder that exists or can be made, be writable, and be
    none of bopsweep's own state (``database``'s files and checkpoints, the folders ``also``,
    every marked folder: :func:`~bopsweep.outputs.check_not_own_state`): checked before anything
    is trained or written, so bad input creates nothing."""
    path = Path(path)
    check_not_own_state(path, database, also=also)
    if path.exists() and not path.is_dir():
        raise UserError(f"--tensorboard {path} is a file; give a folder (new or existing)")
    check_folder_target(path, "write TensorBoard runs")


def study_logdir(
    logdir: Path, study: str, database: Path | None = None, also: Iterable[Path] = ()
) -> Path:
    """``DIR/STUDY``, where a study's runs go: its name, read from a database, made one safe
    folder name (:func:`~bopsweep.folders.name_component`: ``..`` or ``/etc`` stay inside DIR,
    ``a/b`` and ``a_b`` get folders of their own) that must lie inside DIR (not a link out of
    it) and not on bopsweep's own state."""
    root = Path(logdir) / name_component(study, NAME_MAX)
    if not inside(root, logdir):
        raise UserError(
            f"{root} leads outside {logdir} (a link?); remove it or choose another --tensorboard"
        )
    check_not_own_state(root, database, also=also)
    return root


def folder_name(text: str) -> str:
    """``text`` as one readable folder name: runs of characters other than letters, digits and
    ``. = + -`` become ``_`` (no ``/``, no spaces), at most :data:`MAX_NAME` characters."""
    name = re.sub(r"[^\w.=+-]+", "_", text).strip("_").lstrip(".")[:MAX_NAME]
    return name or "_"


def trial_run_name(number: int, label: str | None, config_id: str | None) -> str:
    """``NUMBER-LABEL`` (the label, or the configuration id when there is none): unique within
    a study by its number, readable by its label."""
    return f"{number}-{folder_name(label or config_id or 'trial')}"


def holds_events(folder: Path) -> bool:
    return Path(folder).is_dir() and any(Path(folder).glob(EVENT_FILES))


def row_scalars(row: dict[str, Any]) -> dict[str, float]:
    """The scalar tags of one metric row (values left out where the row has none)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key in ROW_TAGS:
            out[ROW_TAGS[key]] = float(value)
        else:
            prefix = next((p for p in LAYER_PREFIXES if key.startswith(p)), None)
            if prefix is not None:
                out[f"{prefix[:-1]}/{key[len(prefix) :]}"] = float(value)
    return out


# --- one run ----------------------------------------------------------------------------------
class TrialRun:
    """The TensorBoard run of one trial, in ``folder``.

    :meth:`epochs` takes metric rows from epoch 1 on, in any number of calls, and writes those
    the run does not hold yet (so a caller may hand rows again). The folder is made at the
    first write.
    """

    def __init__(self, folder: Path, hparams: dict[str, Any]) -> None:
        self.folder, self.hparams = Path(folder), hparams
        self.written = 0  # the last epoch the run holds
        self.best = -math.inf
        self.started = self.ended = False
        self._purge: int | None = None
        self._writer: Any = None

    def resume(self, epoch: int) -> None:
        """Continue the run already in the folder after ``epoch`` (a resumed training's last
        checkpoint). Epochs the run holds up to there are kept, and not written again; any it
        holds past there (from a run that went further than its checkpoint) are purged, as
        TensorBoard's readers purge a run's steps from a restart on."""
        held, self.started, self.ended = _scan(self.folder)
        self.written = min(held, epoch)
        if held > epoch:
            self._purge, self.ended = epoch + 1, False

    def epochs(self, rows: Iterable[dict[str, Any]], walltime: float | None = None) -> None:
        """Write the scalars of the rows past :attr:`written` (and the session start, first)."""
        for row in sorted(rows, key=lambda r: r[EPOCH]):
            epoch = int(row[EPOCH])
            val = row.get(VAL_ACC)
            binary = epoch > int(self.hparams.get("two_step") or 0)  # not a real-kernel step 1
            if binary and isinstance(val, (int, float)) and not math.isnan(val):
                self.best = max(self.best, float(val))
            if epoch <= self.written:
                continue
            writer = self._open(walltime)
            for tag, value in row_scalars(row).items():
                _add_scalar(writer, tag, value, epoch, walltime)
            # always, and last: the mark of an epoch written whole (see _scan)
            best = self.best if self.best > -math.inf else math.nan
            _add_scalar(writer, BEST_TAG, best, epoch, walltime)
            self.written = epoch
        if self._writer is not None:
            self._writer.flush()  # visible to a TensorBoard that watches, errors raised here

    def end(self, state: str, walltime: float | None = None) -> None:
        """The session end with the trial's final state (COMPLETE, FAIL or PRUNED); once."""
        if self.ended or state not in STATUS:
            return
        writer = self._open(walltime)
        when = time.time() if walltime is None else walltime
        writer.file_writer.add_summary(session_end_summary(state, when), self.written, when)
        writer.flush()
        self.ended = True

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _open(self, walltime: float | None) -> Any:
        if self._writer is None:
            # here, not at the top: torch, which run_study imports with signals held
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder), purge_step=self._purge)
            when = time.time() if walltime is None else walltime
            if not self.started:
                file_writer = self._writer.file_writer
                file_writer.add_summary(experiment_summary(), 0, when)
                file_writer.add_summary(session_start_summary(self.hparams, when), 0, when)
                self.started = True
        return self._writer


def _add_scalar(writer: Any, tag: str, value: float, step: int, walltime: float | None) -> None:
    # the classic simple_value (float32): every reader takes it; TensorBoard's Rust loader
    # (its default) shows no float64 scalars
    writer.add_scalar(tag, value, step, walltime)


def _scan(folder: Path) -> tuple[int, bool, bool]:
    """(the last epoch, whether a session start and a session end are there) of the run in
    ``folder``, read with TensorBoard's own loader. An epoch counts once its last scalar
    (:data:`BEST_TAG`) is there: a writer cut short leaves a prefix of its events."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    last, started, ended = 0, False, False
    for path in sorted(Path(folder).glob(EVENT_FILES)):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == BEST_TAG:
                    last = max(last, event.step)
                started |= value.tag == metadata.SESSION_START_INFO_TAG
                ended |= value.tag == metadata.SESSION_END_INFO_TAG
    return last, started, ended


# --- live sinks: never fail the training ------------------------------------------------------
class _Guard:
    """Runs TensorBoard writes; the first error is said once through ``note`` and ends them."""

    def __init__(self, note: Callable[[str], Any]) -> None:
        self.note, self.broken = note, False

    @contextlib.contextmanager
    def writing(self, where: Path) -> Iterator[bool]:
        if self.broken:
            yield False
            return
        try:
            yield True
        except Exception as e:  # any failure (disk, permissions, protobuf): not the trial's
            self.broken = True
            self.note(
                f"cannot write TensorBoard files in {where} ({type(e).__name__}: {e}); training "
                "goes on without them (bopsweep export --tensorboard writes them from the "
                "database later)"
            )


class TrainBoard:
    """The TensorBoard run of ``bopsweep train``: ``logdir/NAME``, NAME the run folder's."""

    def __init__(
        self,
        logdir: Path,
        run_dir: Path,
        config: TrialConfig,
        resume: bool,
        note: Callable[[str], Any],
    ) -> None:
        folder = Path(logdir) / folder_name(Path(run_dir).resolve().name)
        self.run = TrialRun(folder, trial_hparams(config))
        self.resuming = resume
        self.guard = _Guard(note)

    def check(self) -> None:
        """A new run must not land in a TensorBoard run that holds another one's epochs."""
        if not self.resuming and holds_events(self.run.folder):
            raise UserError(
                f"{self.run.folder} already holds a TensorBoard run; choose another "
                "--tensorboard folder (or --out name), or remove it"
            )

    def resumed(self, rows: list[dict[str, Any]], _steps: list[dict[str, Any]]) -> None:
        """``run_trial``'s ``on_resume``: continue the run after the checkpoint's epoch, writing
        the epochs before it that the run lacks."""
        with self.guard.writing(self.run.folder) as ok:
            if ok:
                self.run.resume(max((int(r[EPOCH]) for r in rows), default=0))
                self.run.epochs(rows)

    def epoch(self, row: dict[str, Any], _steps: list[dict[str, Any]]) -> None:
        with self.guard.writing(self.run.folder) as ok:
            if ok:
                self.run.epochs([row])

    def end(self, state: str | None) -> None:
        """``state``: COMPLETE or FAIL (diverged); None: interrupted, to be resumed."""
        with self.guard.writing(self.run.folder) as ok:
            if ok and state is not None and self.run.written:
                self.run.end(state)
        with contextlib.suppress(Exception):
            self.run.close()


class StudyBoard:
    """The TensorBoard runs of a study's trials as the driver records them: ``root`` is
    ``DIR/STUDY``; one run per trial, made at its first epoch."""

    def __init__(self, root: Path, note: Callable[[str], Any]) -> None:
        self.root = Path(root)
        self.runs: dict[int, TrialRun] = {}  # by trial id
        self.guard = _Guard(note)
        remove_stale_temps(self.root.parent, self.root.name)  # of an export killed there

    def epochs(
        self,
        trial_id: int,
        number: int,
        label: str,
        config_id: str,
        config: dict[str, Any],
        rows: list[dict[str, Any]],
    ) -> None:
        """A trial's newly recorded rows (rows handed again are not written twice)."""
        with self.guard.writing(self.root) as ok:
            if not ok or not rows:
                return
            run = self.runs.get(trial_id)
            if run is None:
                folder = self.root / trial_run_name(number, label, config_id)
                # trial numbers are never reused in a study: events here are of a study of the
                # same name deleted since, which this trial replaces
                for stale in folder.glob(EVENT_FILES):
                    stale.unlink()
                run = TrialRun(folder, trial_hparams(TrialConfig.from_dict(config)))
                self.runs[trial_id] = run
            run.epochs(rows)

    def end(self, trial_id: int, state: str) -> None:
        """The trial ended: COMPLETE, PRUNED or FAIL (crashed, interrupted: its retry, if any,
        is a new trial and a new run)."""
        run = self.runs.pop(trial_id, None)
        if run is None:
            return
        with self.guard.writing(self.root) as ok:
            if ok:
                run.end(state)
        with contextlib.suppress(Exception):
            run.close()

    def close(self) -> None:
        for run in self.runs.values():
            with contextlib.suppress(Exception):
                run.close()
        self.runs.clear()
