"""Reading a study back: trials and metrics as pandas frames, and the rows of the tables that
``status`` and ``studies`` print (the command line only renders them)."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from rich.table import Table

from bopsweep.attr_keys import (
    ATTEMPT,
    BEST_EPOCH,
    BEST_VAL_ACC,
    CONFIG_ID,
    EPOCHS_DONE,
    FAIL_REASON,
    FAILURE,
    LABEL,
    PROVENANCE,
    PROVENANCE_FIELDS,
    PRUNED_AT,
    SLOT,
    STEP1_BEST_EPOCH,
    STEP1_BEST_VAL_ACC,
)
from bopsweep.metric_keys import C2I
from bopsweep.readers.export import json_value
from bopsweep.store import SPEC_ATTR
from bopsweep.store.legacy_reads import legacy_bests
from bopsweep.store.optuna_adapter import all_trials, study_id, trial_id

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from bopsweep.store import Store

# Optuna's columns (``study.trials_dataframe()``), same names and values; the params follow
# ``duration`` as ``params_<name>``, sorted by name, as in Optuna's frame.
OPTUNA_COLUMNS = ("number", "value", "datetime_start", "datetime_complete", "duration")
# bopsweep's own, after Optuna's ``state``
# best_*: binary-weight epochs only; step1_best_*: a two-step run's real-kernel step 1
BOPSWEEP_COLUMNS = ("label", "config_id", "epochs_done", "best_val_acc", "best_epoch",
                    "step1_best_val_acc", "step1_best_epoch", "last_c2i",
                    "failure", "fail_reason", "attempt", "slot", "pruned_at_epoch")  # fmt: skip
_INTEGERS = ("epochs_done", "best_epoch", "step1_best_epoch", "attempt",
             "pruned_at_epoch", "provenance_cudnn")  # fmt: skip  # None where unknown
# a trial's provenance (bopsweep.trial.provenance), one column per field; empty for a trial
# that records none (run before bopsweep 0.4, or made by another tool)
PROVENANCE_COLUMNS = tuple(f"provenance_{name}" for name in PROVENANCE_FIELDS)


def trial_records(store: Store, study: optuna.Study) -> list[dict[str, Any]]:
    """One plain record per trial: Optuna's fields (:data:`OPTUNA_COLUMNS`, ``state``,
    ``params``), bopsweep's (:data:`BOPSWEEP_COLUMNS`) and ``trial_id``: the one source of
    ``status`` (table and JSON), :func:`trials_frame` and :func:`metrics_frame`. Values are as
    stored (Python floats, never rounded; datetimes as Optuna keeps them)."""
    trials = all_trials(study, intermediate_values=False)
    progress = store.metrics.epoch_progress(study, trials)
    bests = legacy_bests(store.metrics, study, trials)  # a study of 0.1: two-step bests anew
    records: list[dict[str, Any]] = []
    for t in trials:
        attrs = {**t.user_attrs, **bests.get(trial_id(t), {})}
        state = t.state.name
        stored, last_row = progress.get(trial_id(t), (0, {}))
        start, complete = t.datetime_start, t.datetime_complete
        records.append(
            {
                "number": t.number,
                # Optuna's: the final validation accuracy of a COMPLETE trial, the last epoch's
                # of a PRUNED one (Optuna records it so), None otherwise
                "value": t.value,
                "datetime_start": start,
                "datetime_complete": complete,
                "duration": complete - start if start and complete else None,
                "state": state,
                "params": dict(t.params),
                "label": attrs.get(LABEL, ""),
                "config_id": attrs.get(CONFIG_ID),
                "epochs_done": attrs.get(EPOCHS_DONE, stored),
                "best_val_acc": attrs.get(BEST_VAL_ACC),
                "best_epoch": attrs.get(BEST_EPOCH),
                "step1_best_val_acc": attrs.get(STEP1_BEST_VAL_ACC),
                "step1_best_epoch": attrs.get(STEP1_BEST_EPOCH),
                # C2I ratio after the last stored epoch (none in rows of bopsweep before C2I)
                "last_c2i": last_row.get(C2I),
                # a FAIL without bopsweep's reason was failed by Optuna's heartbeat check
                "failure": attrs.get(FAILURE) or ("stale" if state == "FAIL" else None),
                "fail_reason": attrs.get(FAIL_REASON)
                or ("no heartbeat within the grace period; re-queued" if state == "FAIL" else None),
                "attempt": attrs.get(ATTEMPT, 0),
                "slot": attrs.get(SLOT),
                "pruned_at_epoch": attrs.get(PRUNED_AT),
                "provenance": attrs.get(PROVENANCE),
                "trial_id": trial_id(t),
            }
        )
    return records


def with_legacy_bests(store: Store, study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials, those of a study of bopsweep 0.1 with their two-step best epochs as
    0.2 counts them (binary-weight epochs only; see :mod:`bopsweep.store.c2i_upgrade`)."""
    trials = all_trials(study, intermediate_values=False)
    bests = legacy_bests(store.metrics, study, trials)
    out = []
    for t in trials:
        if trial_id(t) in bests:
            t = copy.copy(t)
            t.user_attrs = {**t.user_attrs, **bests[trial_id(t)]}
        out.append(t)
    return out


def trials_frame(store: Store, study: optuna.Study) -> pd.DataFrame:
    """One row per trial, in Optuna's columns (``number``, ``value``, ``datetime_start``,
    ``datetime_complete``, ``duration``, ``params_<name>``, ``state``: the values
    ``study.trials_dataframe()`` gives) and then bopsweep's (:data:`BOPSWEEP_COLUMNS`)."""
    return _frame(trial_records(store, study))


def _frame(records: list[dict[str, Any]], trial_ids: bool = False) -> pd.DataFrame:
    params = sorted({name for r in records for name in r["params"]})
    columns = [
        *OPTUNA_COLUMNS, *(f"params_{p}" for p in params), "state", *BOPSWEEP_COLUMNS,
        *PROVENANCE_COLUMNS, *(["trial_id"] if trial_ids else []),
    ]  # fmt: skip
    rows = [
        {**{k: v for k, v in r.items() if k not in ("params", "provenance")},
         **{f"params_{k}": v for k, v in r["params"].items()},
         **{f"provenance_{k}": v for k, v in (r["provenance"] or {}).items()}}
        for r in records
    ]  # fmt: skip
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame["value"] = frame["value"].astype("float64")
    frame["datetime_start"] = pd.to_datetime(frame["datetime_start"])
    frame["datetime_complete"] = pd.to_datetime(frame["datetime_complete"])
    frame["duration"] = pd.to_timedelta(frame["duration"])
    for name in ("best_val_acc", "last_c2i"):
        frame[name] = frame[name].astype("float64")
    for name in _INTEGERS:  # integers with gaps, not floats ("3", not "3.0")
        frame[name] = frame[name].astype("Int64")
    frame["provenance_dirty"] = frame["provenance_dirty"].astype("boolean")
    return frame


def metrics_frame(store: Store, study: optuna.Study, steps: bool = False) -> pd.DataFrame:
    """Per-epoch (or per-logged-step) metrics with each trial's ``number``, ``state``, label,
    configuration id and ``params_<name>``, named as in :func:`trials_frame`."""
    frame = store.metrics.steps_frame(study) if steps else store.metrics.epochs_frame(study)
    if frame.empty:
        return frame
    trials = _frame(trial_records(store, study), trial_ids=True)
    keep = ["trial_id", "number", "state", "label", "config_id"] + [
        c for c in trials.columns if c.startswith("params_")
    ]
    merged = trials[keep].merge(frame, on="trial_id", how="inner")
    return merged.drop(columns=["trial_id"])


MIN_TRIALS_FOR_IMPORTANCE = 5


@dataclass(frozen=True)
class Importances:
    """Parameter importances of a search, as ``status`` prints them and ``plot`` draws them."""

    values: dict[str, float] | None  # by param, most important first; None: not available
    evaluator: str
    complete: int  # complete trials they were estimated from
    why: str = ""  # why there are none


def importances(study: optuna.Study) -> Importances:
    """Importances by one evaluator (Optuna's PED-ANOVA), so the status line and the figure
    agree; none before :data:`MIN_TRIALS_FOR_IMPORTANCE` complete trials. Optuna leaves out
    params that some complete trials do not have (σ of a Bop trial)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    name, n = type(evaluator).__name__, len(complete)
    if n < MIN_TRIALS_FOR_IMPORTANCE:
        why = f"after {MIN_TRIALS_FOR_IMPORTANCE} complete trials ({n} so far)"
        return Importances(None, name, n, why)
    try:
        with warnings.catch_warnings():  # few trials per regime: the line says how many
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as e:
        return Importances(None, name, n, f"not available ({e})")
    return Importances(dict(values), name, n)


def param_importances(study: optuna.Study) -> str:
    """One line: parameter importances by Optuna's PED-ANOVA evaluator, or why there are none."""
    found = importances(study)
    if found.values is None:
        return f"parameter importances: {found.why}"
    ranked = ", ".join(f"{name} {value:.2f}" for name, value in found.values.items())
    return (
        f"parameter importances (Optuna's {found.evaluator}, "
        f"{found.complete} complete trials): {ranked or 'none'}"
    )


# --- the tables of `bopsweep status` and `bopsweep studies` -----------------------------------
STATUS_COLUMNS = ("trial", "configuration", "state", "epochs", "final val acc", "best val acc",
                  "c2i", "note")  # fmt: skip
STUDIES_COLUMNS = ("study", "kind", "complete", "running", "queued", "failed", "description")


STATES = ("COMPLETE", "RUNNING", "WAITING", "PRUNED", "FAIL")  # Optuna's, as its names


def state_counts(states: Any) -> dict[str, int]:
    """Trials per Optuna state name: every state of :data:`STATES` (0 if none), then others."""
    counts = dict.fromkeys(STATES, 0)
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


def status_title(study: optuna.Study, records: list[dict[str, Any]], where: str) -> str:
    counts = state_counts(r["state"] for r in records)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()) if n)
    return f"study {study.study_name} in {where}: {states}"


def status_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row of text per trial of :func:`trial_records`, in :data:`STATUS_COLUMNS`."""
    rows = []
    for t in records:
        failed = t["state"] == "FAIL" and t["failure"] is not None
        rows.append(
            [
                str(t["number"]),
                t["label"] or str(t["config_id"]),
                f"FAIL ({t['failure']})" if failed else t["state"],
                str(int(t["epochs_done"] or 0)),
                _fmt(t["value"] if t["state"] == "COMPLETE" else None),
                _fmt(t["best_val_acc"]),
                _fmt(t["last_c2i"]),
                _note(t),
            ]
        )
    return rows


def best_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The complete trial of the highest final accuracy (the first of equals); None if none."""
    complete = [r for r in records if r["state"] == "COMPLETE" and _number(r["value"])]
    return max(complete, key=lambda r: r["value"], default=None)


def best_line(records: list[dict[str, Any]]) -> str | None:
    """The best complete trial, or None while none is complete."""
    best = best_record(records)
    if best is None:
        return None
    return (
        f"best: trial {best['number']} ({best['label'] or best['config_id']}), "
        f"final val acc {best['value']:.4f}"
    )


def means_table(means: list[dict[str, Any]]) -> Any:
    """A seed-averaged search's configurations: mean final accuracy over their seeds, the
    sample std (ddof 1) and each seed's value."""
    table = Table(title="configurations, mean over their seeds", title_justify="left")
    for column in ("configuration", "label", "state", "mean val acc", "std", "seeds", "runs"):
        table.add_column(column)
    for m in means:
        values = m["seed_values"] or []
        table.add_row(
            str(m["configuration"]),
            str(m["label"] or ""),
            m["state"],
            _fmt(m["mean"] if m["state"] == "COMPLETE" else None),
            _fmt(m["std"]),
            " ".join(f"{v:.4f}" for v in values),
            " ".join(map(str, m["seed_runs"] or [])),
        )
    return table


def best_mean_line(means: list[dict[str, Any]]) -> str | None:
    """The configuration of the best mean, or None while none is complete."""
    complete = [m for m in means if m["state"] == "COMPLETE" and _number(m["mean"])]
    best = max(complete, key=lambda m: m["mean"], default=None)
    if best is None:
        return None
    spread = f" ± {best['std']:.4f}" if _number(best["std"]) else ""
    return (
        f"best: configuration {best['configuration']} ({best['label']}), mean final val acc "
        f"{best['mean']:.4f}{spread} over {len(best['seed_values'] or [])} seeds"
    )


# what a trial's object in ``status --format json`` holds, in this order: the fields of
# ``export`` (Optuna's names), with the params as one object, as ``optuna trials -f json`` has them
STATUS_JSON_FIELDS = (*OPTUNA_COLUMNS, "state", "params", *BOPSWEEP_COLUMNS, "provenance")


def status_document(
    study: optuna.Study, records: list[dict[str, Any]], where: str
) -> dict[str, Any]:
    """``status --format json``: the study, its counts per state and one object per trial,
    floats as stored (``json.dumps`` writes a Python float so that it reads back the same),
    NaN and infinities as null, datetimes and durations as ISO 8601 (as ``export`` writes
    them)."""
    best = best_record(records)
    return json_safe(
        {
            "study": study.study_name,
            "kind": study.user_attrs[SPEC_ATTR]["kind"],
            "storage": where,
            "counts": state_counts(r["state"] for r in records),
            "best_trial": None if best is None else best["number"],
            "trials": [{k: r[k] for k in STATUS_JSON_FIELDS} for r in records],
        }
    )


def study_summaries(store: Store) -> list[dict[str, Any]]:
    """One record per bopsweep study in the database: name, kind, description, counts per
    state: the one source of ``studies`` (table and JSON)."""
    out = []
    for s in store.storage.get_all_studies():
        spec = s.user_attrs.get(SPEC_ATTR)
        if spec is None:
            continue
        trials = store.storage.get_all_trials(study_id(s), deepcopy=False)
        out.append(
            {
                "study": s.study_name,
                "kind": spec["kind"],
                "description": spec.get("description", ""),
                "counts": state_counts(t.state.name for t in trials),
            }
        )
    return out


def studies_rows(summaries: list[dict[str, Any]]) -> list[list[str]]:
    """One row per study of :func:`study_summaries`, in :data:`STUDIES_COLUMNS`."""
    return [
        [s["study"], s["kind"], *(str(s["counts"][k]) for k in ("COMPLETE", "RUNNING", "WAITING",
         "FAIL")), s["description"]]
        for s in summaries
    ]  # fmt: skip


def studies_document(summaries: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """``studies --format json``."""
    return json_safe({"storage": where, "studies": summaries})


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither), datetimes and durations as
    ISO 8601 text, everything else as is."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return json_value(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value


def _note(t: Any) -> str:
    if t["state"] == "PRUNED" and t.get("pruned_at_epoch") is not None:
        return f"pruned at epoch {int(t['pruned_at_epoch'])}"
    reason = t["fail_reason"]
    return reason if isinstance(reason, str) else ""


def _fmt(value: Any) -> str:
    try:
        return "" if value is None or value != value else f"{float(value):.4f}"
    except (TypeError, ValueError):
        return ""
