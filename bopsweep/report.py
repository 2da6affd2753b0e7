"""Reading a study back: trials and metrics as pandas frames, for status, export and plots."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from bopsweep.store import Store

TRIAL_COLUMNS = (
    "number",
    "state",
    "label",
    "config_id",
    "epochs_done",
    "final_val_acc",
    "best_val_acc",
    "best_epoch",
    "failure",
    "fail_reason",
    "attempt",
    "slot",
)


def trials_frame(store: Store, study: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, results, reason of failure, and its params (``param_*``)."""
    import pandas as pd

    running_epochs = store.epoch_counts(study)
    records: list[dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        state = t.state.name
        record = {
            "number": t.number,
            "state": state,
            "label": attrs.get("label", ""),
            "config_id": attrs.get("config_id"),
            "epochs_done": attrs.get("epochs_done", running_epochs.get(t._trial_id, 0)),
            "final_val_acc": t.value if state == "COMPLETE" else None,
            "best_val_acc": attrs.get("best_val_acc"),
            "best_epoch": attrs.get("best_epoch"),
            # a FAIL without bopsweep's reason was failed by Optuna's heartbeat check
            "failure": attrs.get("failure") or ("stale" if state == "FAIL" else None),
            "fail_reason": attrs.get("fail_reason")
            or ("no heartbeat within the grace period; re-queued" if state == "FAIL" else None),
            "attempt": attrs.get("attempt", 0),
            "slot": attrs.get("slot"),
            "pruned_at_epoch": attrs.get("pruned_at_epoch"),
            "trial_id": t._trial_id,
        }
        record.update({f"param_{k}": v for k, v in t.params.items()})
        records.append(record)
    return pd.DataFrame.from_records(records, columns=None if records else list(TRIAL_COLUMNS))


def metrics_frame(store: Store, study: optuna.Study, steps: bool = False) -> pd.DataFrame:
    """Per-epoch (or per-logged-step) metrics with each trial's number, label and params."""
    frame = store.steps_frame(study) if steps else store.epochs_frame(study)
    if frame.empty:
        return frame
    trials = trials_frame(store, study)
    keep = ["trial_id", "number", "state", "label", "config_id"] + [
        c for c in trials.columns if c.startswith("param_")
    ]
    merged = trials[keep].merge(frame, on="trial_id", how="inner")
    return merged.drop(columns=["trial_id"])


MIN_TRIALS_FOR_IMPORTANCE = 5


def param_importances(study: optuna.Study) -> str:
    """One line: parameter importances by Optuna's default evaluator, or why there are none."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return (
            f"parameter importances: after {MIN_TRIALS_FOR_IMPORTANCE} complete trials "
            f"({len(complete)} so far)"
        )
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        with warnings.catch_warnings():  # few trials per regime: the line says how many
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as e:
        return f"parameter importances: not available ({e})"
    ranked = ", ".join(f"{name} {value:.2f}" for name, value in importances.items())
    return (
        f"parameter importances (Optuna's {type(evaluator).__name__}, "
        f"{len(complete)} complete trials): {ranked or 'none'}"
    )
