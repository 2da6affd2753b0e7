"""A study read back for drawing: one :class:`Run` per configuration, and the selections of runs
that the figures draw (seeds of a point, a one-factor view of a grid, arms)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from bopsweep.store import Store


@dataclass
class Run:
    """One configuration's curves: its most complete trial (retries carry the whole curve)."""

    number: int
    label: str
    config: dict[str, Any]
    state: str
    epochs: pd.DataFrame
    steps: pd.DataFrame

    @property
    def point(self) -> str:
        """The configuration without its seed: seeds of one point are drawn together."""
        return json.dumps({k: v for k, v in self.config.items() if k != "seed"}, sort_keys=True)


@dataclass
class StudyData:
    name: str
    spec: dict[str, Any]
    runs: list[Run]
    study: Any = None  # the optuna.Study, for Optuna's own plots
    colours: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.spec["kind"]


def load_study_data(store: Store, study: optuna.Study) -> StudyData:
    from bopsweep.store import SPEC_ATTR
    from bopsweep.store.optuna_adapter import all_trials, trial_id
    from bopsweep.store.trial_config import has_config, study_base, trial_config

    trials = all_trials(study, intermediate_values=False)
    epochs = store.metrics.epochs_frame(study, trials)
    steps = store.metrics.steps_frame(study, trials)
    by_config: dict[str, Any] = {}
    counts = epochs.groupby("trial_id").size().to_dict() if not epochs.empty else {}
    for t in trials:
        cid = t.user_attrs.get("config_id")
        if cid is None or not has_config(t.user_attrs):  # never configured (a crash): no curve
            continue
        key = (counts.get(trial_id(t), 0), t.number)
        if cid not in by_config or key > by_config[cid][0]:
            by_config[cid] = (key, t)
    runs, base = [], study_base(study.user_attrs)
    epochs_of, steps_of = _by_trial(epochs), _by_trial(steps)
    for (n_epochs, _), t in sorted(by_config.values(), key=lambda kt: kt[1].number):
        if n_epochs == 0:
            continue
        tid = trial_id(t)
        runs.append(
            Run(
                number=t.number,
                label=t.user_attrs.get("label") or t.user_attrs["config_id"],
                config=trial_config(t.user_attrs, base),
                state=t.state.name,
                epochs=epochs_of.get(tid, _none_of(epochs)),
                steps=steps_of.get(tid, _none_of(steps)),
            )
        )
    return StudyData(study.study_name, study.user_attrs[SPEC_ATTR], runs, study)


def _by_trial(frame: pd.DataFrame) -> dict[int, pd.DataFrame]:
    """Each trial's rows of a metrics frame, split in one pass (a mask per trial read the whole
    frame for each: quadratic in the study's size)."""
    if frame.empty:
        return {}
    return {
        int(tid): part.reset_index(drop=True) for tid, part in frame.groupby("trial_id", sort=False)
    }


def _none_of(frame: pd.DataFrame) -> pd.DataFrame:
    """No rows, the frame's columns."""
    return frame.iloc[0:0].reset_index(drop=True)


def swept_params(data: StudyData) -> list[str]:
    """The numeric settings a grid or pow10 study varies."""
    if data.kind not in ("grid", "pow10"):
        return []
    return [
        p
        for p, values in data.spec["grid"].items()
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ]


def seed_band(runs: list[Run], x: str, y: str, source: str = "epochs") -> pd.DataFrame:
    """Mean, min and max of ``y`` over the runs (seeds), by ``x``."""
    return seed_bands({0: runs}, x, y, source)[0]


def seed_bands(
    groups: dict[Any, list[Run]], x: str, y: str, source: str = "epochs"
) -> dict[Any, pd.DataFrame]:
    """:func:`seed_band` of each group of runs, computed together: one grouping of all their
    rows, not one per group (a grid of 10,000 points has 10,000 groups)."""
    import numpy as np
    import pandas as pd

    codes, xs, ys = [], [], []
    for code, runs in enumerate(groups.values()):
        for r in runs:
            frame = getattr(r, source)
            if not frame.empty:
                xs.append(frame[x].to_numpy())
                ys.append(frame[y].to_numpy())
                codes.append(np.full(len(frame), code))
    empty = pd.DataFrame(columns=[x, "mean", "min", "max"])
    if not xs:
        return dict.fromkeys(groups, empty)
    rows = pd.DataFrame(
        {"group": np.concatenate(codes), x: np.concatenate(xs), y: np.concatenate(ys)}
    )
    stats = rows.groupby(["group", x])[y].agg(["mean", "min", "max"]).reset_index(level=x)
    found = stats.index.to_numpy()
    starts = np.searchsorted(found, np.arange(len(groups) + 1))  # rows sorted by group
    return {
        key: stats.iloc[starts[code] : starts[code + 1]].reset_index(drop=True)
        if starts[code] < starts[code + 1]
        else empty
        for code, key in enumerate(groups)
    }


def group_by_point(runs: list[Run]) -> dict[str, list[Run]]:
    """The runs by point: the seeds of one configuration together."""
    by_point: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_point[r.point].append(r)
    return by_point


def held(data: StudyData, param: str) -> dict[str, Any]:
    """The other grid axes of a one-factor view: at the base point, or their first value."""
    base = data.spec["base"]
    return {
        axis: base.get(axis) if base.get(axis) in values else values[0]
        for axis, values in data.spec["grid"].items()
        if axis != param
    }


def points_along(data: StudyData, param: str) -> dict[Any, list[Run]]:
    """Runs of a one-factor ablation of ``param``: the other grid axes held at the base point
    (or, where the base is not on an axis, its first value); grouped by the value of ``param``."""
    fixed = held(data, param)
    by_value: dict[Any, list[Run]] = defaultdict(list)
    for r in data.runs:
        if all(r.config.get(k) == v for k, v in fixed.items()):
            by_value[r.config[param]].append(r)
    return dict(sorted(by_value.items()))


def arm_label(run: Run) -> str:
    """A run's label without its seed: the name of its arm."""
    label = run.label
    seed = run.config.get("seed")
    return label.rsplit(" seed=", 1)[0] if seed is not None else label
