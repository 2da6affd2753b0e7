"""``bopsweep export --tensorboard``: a study's trials written as TensorBoard runs, replacing an
earlier export whole (:mod:`bopsweep.readers.tensorboard` writes each run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from bopsweep.attr_keys import CONFIG_ID, LABEL
from bopsweep.errors import UserError
from bopsweep.files import (
    remove_stale_temps,
    temp_folder,
)
from bopsweep.outputs import check_not_own_state
from bopsweep.readers.tensorboard import (
    EVENT_FILES,
    TrialRun,
    check_logdir,
    study_logdir,
    trial_run_name,
)
from bopsweep.readers.tensorboard_hparams import trial_hparams
from bopsweep.store import database_file
from bopsweep.store.optuna_adapter import trial_id
from bopsweep.store.trial_config import study_base, trial_config
from bopsweep.trial.config import TrialConfig

if TYPE_CHECKING:
    import optuna

    from bopsweep.store import Store


def export_study(store: Store, study: optuna.Study, logdir: Path, force: bool) -> tuple[Path, int]:
    """Write a study's trials as TensorBoard runs under ``logdir/STUDY`` (the folder and the
    number of runs). An existing ``logdir/STUDY`` is refused without ``force``; with it, it is
    replaced whole: the runs are written to a temporary folder beside it, which then takes its
    place by two renames, so a TensorBoard that watches never reads a mix of both exports. The
    temporary folders of this study that a killed export left there are removed first."""
    database = database_file(store.url)
    check_logdir(logdir, database)
    target = study_logdir(logdir, study.study_name, database)
    check_not_own_state(target, database, holds=True)  # --force replaces it whole
    if target.exists() and not target.is_dir():
        raise UserError(f"{target} is a file; remove it or choose another --tensorboard folder")
    if target.exists() and not force:
        raise UserError(f"{target} exists (an earlier export?); pass --force to replace it")
    if target.exists():
        check_only_runs(target)
    rows = store.metrics.epoch_rows(study)
    trials = [t for t in study.get_trials(deepcopy=False) if rows.get(trial_id(t))]
    base = study_base(study.user_attrs)
    configs = {t.number: TrialConfig.from_dict(trial_config(t.user_attrs, base)) for t in trials}
    Path(logdir).mkdir(parents=True, exist_ok=True)
    # an earlier export killed outright left its runs in a hidden folder beside the target,
    # which TensorBoard (it reads hidden folders too) would list as runs of their own
    remove_stale_temps(Path(logdir), target.name)
    with temp_folder(Path(logdir), target.name) as work:
        for t in trials:
            attrs = t.user_attrs
            run = TrialRun(
                work / trial_run_name(t.number, attrs.get(LABEL), attrs.get(CONFIG_ID)),
                trial_hparams(configs[t.number]),
            )
            # the database keeps no time per epoch: the trial's end (or start) stands for it
            when = t.datetime_complete or t.datetime_start
            walltime = when.timestamp() if when is not None else None
            try:
                run.epochs(rows[trial_id(t)], walltime)
                run.end(t.state.name, walltime)
            finally:
                run.close()
        _replace_folder(work, target)
    return target, len(trials)


def check_only_runs(folder: Path) -> None:
    """``--force`` replaces only what bopsweep wrote there: an earlier export (or a study's
    runs), a folder of TensorBoard runs, each a folder of event files. A user's own file or
    folder of that name is never removed."""
    for run in sorted(Path(folder).iterdir()):
        found = [] if run.is_dir() and not run.is_symlink() else [run]
        found = found or [f for f in sorted(run.iterdir()) if not _event_file(f)]
        if found:
            raise UserError(
                f"{folder} holds {found[0]}, which is no TensorBoard run bopsweep wrote; --force "
                "replaces only an earlier export: move it away or choose another --tensorboard"
            )


def _event_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and path.match(EVENT_FILES)


def _replace_folder(new: Path, target: Path) -> None:
    """``new`` takes ``target``'s place; the old ``target`` (if any) is removed after."""
    if not target.exists():
        os.replace(new, target)
        return
    with temp_folder(target.parent, target.name, "old") as old:
        os.replace(target, old / target.name)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old / target.name, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
