"""How a read-only command reads a study of schema version 0 (bopsweep 0.1) without writing.

A writing command upgrades such a study (:mod:`bopsweep.store.schema`); a read-only one reads
its C2I values and two-step bests as the current version means them, changing nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bopsweep.attr_keys import BEST_VAL_ACC
from bopsweep.store.c2i_upgrade import two_step_bests
from bopsweep.store.optuna_adapter import all_trials, trial_id
from bopsweep.store.schema import schema_version
from bopsweep.store.trial_config import study_base, trial_setting

if TYPE_CHECKING:
    import optuna


def of_0_1(user_attrs: Mapping[str, Any]) -> bool:
    """Whether a study (its user attributes) holds 0.1's meanings: a bopsweep study (it has
    its definition) of schema version 0. A study of another tool holds no bopsweep rows."""
    return schema_version(user_attrs) < 1


def legacy_bests(
    metrics: Any, study: optuna.Study, trials: Any = None
) -> dict[int, dict[str, Any]]:
    """For a study of 0.1 not yet converted, its two-step trials' best epochs as 0.2 counts
    them, by trial id (``metrics``: the database's :class:`~bopsweep.store.metrics.
    MetricTables`; ``trials``: the study's, if read already); empty for any other study."""
    if not of_0_1(study.user_attrs):
        return {}
    base = study_base(study.user_attrs)

    def two_step(attrs: Mapping[str, Any]) -> bool:
        try:
            return bool(trial_setting(attrs, base, "two_step"))
        except Exception:  # a configuration bopsweep cannot read: not counted again
            return False

    if trials is None:
        trials = all_trials(study, intermediate_values=False)
    runs = {
        trial_id(t): t.user_attrs
        for t in trials
        if BEST_VAL_ACC in t.user_attrs and two_step(t.user_attrs)
    }
    return two_step_bests(runs, base, metrics.epoch_rows(study)) if runs else {}
