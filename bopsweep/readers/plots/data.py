"""A study read back for drawing: one :class:`Run` per configuration, and the selections of runs
that the figures draw (seeds of a point, a one-factor view of a grid, arms)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bopsweep.attr_keys import CONFIG_ID, LABEL
from bopsweep.metric_keys import C2I, FLIP_FRAC, HYPER_COLUMNS, PI, TRAIN_ACC, VAL_ACC, layer_column
from bopsweep.store import SPEC_ATTR
from bopsweep.store.optuna_adapter import all_trials, trial_id
from bopsweep.store.trial_config import has_config, study_base, trial_config
from bopsweep.studies.designs import FigureName, stored_design
from bopsweep.trial.config import TrialConfig

if TYPE_CHECKING:
    from collections.abc import Sequence

    import optuna

    from bopsweep.store import Store
    from bopsweep.studies.designs import Design


LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "fc1", "fc2", "fc3")
# what the figures draw of a row (π_t, flip fraction and C2I also per layer asked for); the
# scheduled hyperparameters as a schedule figure draws them
EPOCH_COLUMNS = (VAL_ACC, TRAIN_ACC, *HYPER_COLUMNS, FLIP_FRAC, C2I)
STEP_COLUMNS = (PI,)


class Run:
    """One configuration's curves: its most complete trial (retries carry the whole curve).

    ``epochs`` and ``steps``: its rows of the metrics tables, as frames or as their columns
    (numpy arrays, made a frame only when one is asked for: a study of 10,000 runs draws most
    of them from :meth:`column` alone)."""

    def __init__(
        self,
        number: int,
        label: str,
        config: dict[str, Any],
        state: str,
        epochs: pd.DataFrame | dict[str, Any],
        steps: pd.DataFrame | dict[str, Any],
    ) -> None:
        self.number, self.label, self.config, self.state = number, label, config, state
        self._rows = {"epochs": epochs, "steps": steps}

    @property
    def epochs(self) -> pd.DataFrame:
        return self._frame("epochs")

    @property
    def steps(self) -> pd.DataFrame:
        return self._frame("steps")

    def best_val_acc(self) -> float:
        """The best validation accuracy of its binary-weight epochs (not a two-step run's
        step 1, whose kernels are real), as :func:`bopsweep.trial.best.best_epochs` counts it."""
        epochs, val = self.column("epochs", "epoch"), self.column("epochs", VAL_ACC)
        binary = val[epochs > int(self.config.get("two_step") or 0)]
        return float((binary if len(binary) else val[-1:]).max())

    def column(self, source: str, name: str) -> Any:
        """The values of ``name`` in ``source`` (``epochs`` or ``steps``) as a numpy array;
        None where the run has no such column."""
        rows = self._rows[source]
        if isinstance(rows, dict):
            return rows.get(name)
        return rows[name].to_numpy() if name in rows else None

    def _frame(self, source: str) -> pd.DataFrame:
        rows = self._rows[source]
        if isinstance(rows, dict):
            rows = self._rows[source] = pd.DataFrame(rows)
        return rows

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

    @cached_property
    def design(self) -> Design:
        """The study's design, read from its stored definition."""
        return stored_design(self.spec)


def load_study_data(store: Store, study: optuna.Study, layers: Sequence[str] = LAYERS) -> StudyData:
    """The study's runs with what the figures draw of them (:data:`EPOCH_COLUMNS`,
    :data:`STEP_COLUMNS`, and those of ``layers``), picked out by the database where it can:
    a study of 10,000 trials × 100 epochs stores 10^8 values, the figures draw a tenth."""
    trials = all_trials(study, intermediate_values=False)
    per_layer = [layer_column(name, layer) for layer in layers for name in (FLIP_FRAC, C2I)]
    epochs = store.metrics.epochs_frame(study, trials, [*EPOCH_COLUMNS, *per_layer])
    steps = store.metrics.steps_frame(
        study, trials, [*STEP_COLUMNS, *(layer_column(PI, n) for n in layers)]
    )
    by_config: dict[str, Any] = {}
    counts = epochs.groupby("trial_id").size().to_dict() if not epochs.empty else {}
    for t in trials:
        cid = t.user_attrs.get(CONFIG_ID)
        if cid is None or not has_config(t.user_attrs):  # never configured (a crash): no curve
            continue
        key = (counts.get(trial_id(t), 0), t.number)
        if cid not in by_config or key > by_config[cid][0]:
            by_config[cid] = (key, t)
    runs, base = [], study_base(study.user_attrs)
    (epochs_of, no_epochs), (steps_of, no_steps) = _by_trial(epochs), _by_trial(steps)
    for (n_epochs, _), t in sorted(by_config.values(), key=lambda kt: kt[1].number):
        if n_epochs == 0:
            continue
        tid = trial_id(t)
        runs.append(
            Run(
                number=t.number,
                label=t.user_attrs.get(LABEL) or t.user_attrs[CONFIG_ID],
                config=trial_config(t.user_attrs, base),
                state=t.state.name,
                epochs=epochs_of.get(tid, no_epochs),
                steps=steps_of.get(tid, no_steps),
            )
        )
    return StudyData(study.study_name, study.user_attrs[SPEC_ATTR], runs, study)


def _by_trial(frame: pd.DataFrame) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """Each trial's rows of a metrics frame (sorted by trial) as its columns, slices of the
    frame's, split in one pass; and the columns of no rows, for a trial without any."""
    columns = {c: frame[c].to_numpy() for c in frame.columns}
    none = {c: values[0:0] for c, values in columns.items()}
    if frame.empty:
        return {}, none
    ids = columns["trial_id"]
    starts = np.concatenate([[0], np.flatnonzero(ids[1:] != ids[:-1]) + 1, [len(ids)]])
    return {
        int(ids[a]): {c: values[a:b] for c, values in columns.items()}
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist())
    }, none


def swept_params(data: StudyData) -> list[str]:
    """The numeric settings a study varies, where its design sweeps them (a grid or pow10
    study: :attr:`~bopsweep.studies.designs.FigureName.SWEEP`). Only settings of a trial: the
    definition is read from the database, where another tool may have written any key (which
    then names no setting to draw, nor a figure's file)."""
    if FigureName.SWEEP not in data.design.figures:
        return []
    settings = {f.name for f in fields(TrialConfig)}
    return [
        p
        for p, values in data.spec["grid"].items()
        if p in settings
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ]


def seed_band(runs: list[Run], x: str, y: str, source: str = "epochs") -> pd.DataFrame:
    """Mean, min and max of ``y`` over the runs (seeds), by ``x``."""
    return seed_bands({0: runs}, x, y, source)[0]


class SeedBands(Mapping[Any, "pd.DataFrame"]):
    """:func:`seed_band` of each group, by the group's key: computed together, kept as one
    table, and made a frame only when a band is asked for (a grid of 10,000 points has 10,000
    groups; a figure of that many draws :meth:`arrays`)."""

    def __init__(self, keys: list[Any], x: str, stats: pd.DataFrame, starts: Any) -> None:
        self.x, self._keys, self._starts = x, {k: i for i, k in enumerate(keys)}, starts
        self._columns = {c: stats[c].to_numpy() for c in (x, "mean", "min", "max")}

    def __getitem__(self, key: Any) -> pd.DataFrame:
        return pd.DataFrame(self.arrays(key))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def arrays(self, key: Any) -> dict[str, Any]:
        """The band's columns (``x``, mean, min, max) as numpy arrays, no frame made."""
        code = self._keys[key]
        span = slice(self._starts[code], self._starts[code + 1])
        return {c: values[span] for c, values in self._columns.items()}


def seed_bands(groups: dict[Any, list[Run]], x: str, y: str, source: str = "epochs") -> SeedBands:
    """:func:`seed_band` of each group of runs, computed together: one grouping of all their
    rows, not one per group. A missing value (NaN, or a run without ``y``: one of bopsweep
    before C2I) is left out; an ``x`` where no run has one is not in the band."""
    codes, xs, ys = [], [], []
    for code, runs in enumerate(groups.values()):
        for r in runs:
            xv, yv = r.column(source, x), r.column(source, y)
            if xv is not None and yv is not None and len(xv):
                xs.append(xv)
                ys.append(yv)
                codes.append(np.full(len(xv), code))
    rows = pd.DataFrame(
        {"group": np.concatenate(codes), x: np.concatenate(xs), y: np.concatenate(ys)}
        if xs
        else {"group": np.empty(0, int), x: np.empty(0), y: np.empty(0)}
    ).dropna()
    stats = rows.groupby(["group", x])[y].agg(["mean", "min", "max"]).reset_index(level=x)
    starts = np.searchsorted(stats.index.to_numpy(), np.arange(len(groups) + 1))  # by group
    return SeedBands(list(groups), x, stats, starts)


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
