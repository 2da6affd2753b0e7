"""The one place that reaches past Optuna's public API.

Optuna's public ``Study`` and ``FrozenTrial`` do not expose the storage a study lives in, nor
the database ids of studies and trials; bopsweep needs all three: to claim a WAITING trial
atomically (``storage.set_trial_state_values``), to record heartbeats and intermediate values
of trials that run in other processes, and to key its metric rows. Everything else goes through
the storage's public methods. Tested against the Optuna versions ``pyproject.toml`` admits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.study._frozen import FrozenStudy  # not exported by optuna.study


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study lives in."""
    return study._storage


def study_id(study: optuna.Study | FrozenStudy) -> int:
    """The database id of a study (the ``study_id`` column of bopsweep's metric tables)."""
    return study._study_id


def trial_id(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int:
    """The database id of a trial, unique in its storage (unlike its number)."""
    return trial._trial_id
