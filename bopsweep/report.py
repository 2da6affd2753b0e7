"""Reading a study back: trials and metrics as pandas frames, and the rows of the tables that
``status`` and ``studies`` print (the command line only renders them)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep.store.optuna_adapter import study_id, trial_id

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
    "last_c2i",
    "failure",
    "fail_reason",
    "attempt",
    "slot",
)


def trials_frame(store: Store, study: optuna.Study) -> pd.DataFrame:
    """One row per trial: state, results, reason of failure, and its params (``param_*``)."""
    import pandas as pd

    progress = store.metrics.epoch_progress(study)
    records: list[dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        state = t.state.name
        stored, last_row = progress.get(trial_id(t), (0, {}))
        record = {
            "number": t.number,
            "state": state,
            "label": attrs.get("label", ""),
            "config_id": attrs.get("config_id"),
            "epochs_done": attrs.get("epochs_done", stored),
            "final_val_acc": t.value if state == "COMPLETE" else None,
            "best_val_acc": attrs.get("best_val_acc"),
            "best_epoch": attrs.get("best_epoch"),
            # C2I ratio after the last stored epoch (none in rows of bopsweep before C2I)
            "last_c2i": last_row.get("c2i"),
            # a FAIL without bopsweep's reason was failed by Optuna's heartbeat check
            "failure": attrs.get("failure") or ("stale" if state == "FAIL" else None),
            "fail_reason": attrs.get("fail_reason")
            or ("no heartbeat within the grace period; re-queued" if state == "FAIL" else None),
            "attempt": attrs.get("attempt", 0),
            "slot": attrs.get("slot"),
            "pruned_at_epoch": attrs.get("pruned_at_epoch"),
            "trial_id": trial_id(t),
        }
        record.update({f"param_{k}": v for k, v in t.params.items()})
        records.append(record)
    return pd.DataFrame.from_records(records, columns=None if records else list(TRIAL_COLUMNS))


def metrics_frame(store: Store, study: optuna.Study, steps: bool = False) -> pd.DataFrame:
    """Per-epoch (or per-logged-step) metrics with each trial's number, label and params."""
    frame = store.metrics.steps_frame(study) if steps else store.metrics.epochs_frame(study)
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


# --- the tables of `bopsweep status` and `bopsweep studies` -----------------------------------
STATUS_COLUMNS = ("trial", "configuration", "state", "epochs", "final val acc", "best val acc",
                  "c2i", "note")  # fmt: skip
STUDIES_COLUMNS = ("study", "kind", "complete", "running", "queued", "failed", "description")


def status_title(study: optuna.Study, frame: pd.DataFrame, where: str) -> str:
    counts = frame["state"].value_counts().to_dict() if not frame.empty else {}
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    return f"study {study.study_name} in {where}: {states}"


def status_rows(frame: pd.DataFrame) -> list[list[str]]:
    """One row of text per trial of :func:`trials_frame`, in :data:`STATUS_COLUMNS`."""
    rows = []
    for _, t in frame.iterrows():
        failed = t["state"] == "FAIL" and t["failure"] is not None
        rows.append(
            [
                str(t["number"]),
                t["label"] or str(t["config_id"]),
                f"FAIL ({t['failure']})" if failed else t["state"],
                str(int(t["epochs_done"] or 0)),
                _fmt(t["final_val_acc"]),
                _fmt(t["best_val_acc"]),
                _fmt(t["last_c2i"]),
                _note(t),
            ]
        )
    return rows


def best_line(frame: pd.DataFrame) -> str | None:
    """The best complete trial, or None while none is complete."""
    complete = frame[frame["state"] == "COMPLETE"] if not frame.empty else frame
    if complete.empty:
        return None
    best = complete.loc[complete["final_val_acc"].idxmax()]
    return (
        f"best: trial {best['number']} ({best['label'] or best['config_id']}), "
        f"final val acc {best['final_val_acc']:.4f}"
    )


def studies_rows(store: Store) -> list[list[str]]:
    """One row per bopsweep study in the database, in :data:`STUDIES_COLUMNS`."""
    from bopsweep.store import SPEC_ATTR

    rows = []
    for s in store.storage.get_all_studies():
        spec = s.user_attrs.get(SPEC_ATTR)
        if spec is None:
            continue
        trials = store.storage.get_all_trials(study_id(s), deepcopy=False)
        n = {
            state: sum(t.state.name == state for t in trials)
            for state in ("COMPLETE", "RUNNING", "WAITING", "FAIL")
        }
        rows.append(
            [s.study_name, spec["kind"], str(n["COMPLETE"]), str(n["RUNNING"]),
             str(n["WAITING"]), str(n["FAIL"]), spec.get("description", "")]
        )  # fmt: skip
    return rows


def _note(t: Any) -> str:
    if t["state"] == "PRUNED" and t.get("pruned_at_epoch") is not None:
        return f"pruned at epoch {int(t['pruned_at_epoch'])}"
    reason = t["fail_reason"]
    return reason if isinstance(reason, str) else ""  # pandas gives NaN where none is set


def _fmt(value: Any) -> str:
    try:
        return "" if value is None or value != value else f"{float(value):.4f}"
    except (TypeError, ValueError):
        return ""


def write_frame(frame: pd.DataFrame, output: Path, format: str) -> None:
    """Write a frame as CSV or JSON records, atomically (a crash leaves no half file)."""
    from bopsweep.errors import UserError
    from bopsweep.files import atomic_open

    try:
        with atomic_open(output, "w", newline="") as f:
            if format == "csv":
                frame.to_csv(f, index=False)
            else:
                frame.to_json(f, orient="records", indent=1)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror}") from None
