"""Table 1 with error bars: a study's configurations, their accuracy over seeds and how each
differs from a declared baseline configuration, as Markdown, LaTeX or CSV.

A *configuration* is a trial's configuration without its seed. Its values are those of the
study's COMPLETE trials, one per (configuration, seed): where a configuration and seed were
completed more than once, the latest counts. Final accuracy is the trial's value (last epoch),
best accuracy its best epoch's, train accuracy its last epoch's on the training set (where the
trial records it); all in %. The statistics are :mod:`bopsweep.readers.stats`'.

The baseline is declared, never the best mean (choosing the reference after looking at the
results and then testing against it overstates every difference): ``--baseline LABEL``, else
the study's base point (the arm whose configuration is the study's base, e.g. the centre of an
ablation), else the study's first configuration.

:func:`group_arms` reads the trials, :func:`build_table` computes, :func:`render`
(:mod:`bopsweep.readers.table_render`) writes text; the command line (``bopsweep table``) only
chains
them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bopsweep.attr_keys import BEST_VAL_ACC, FINAL_TRAIN_ACC, LABEL, PROVENANCE, PROVENANCE_FIELDS
from bopsweep.defaults import TableMetric
from bopsweep.errors import UserError
from bopsweep.readers.stats import ALPHA, Outcome, Summary, compare_to_baseline, summarize
from bopsweep.store.trial_config import has_config, trial_config
from bopsweep.trial.config import TrialConfig
from bopsweep.trial.settings import LOCAL

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

_SEED = re.compile(r"(?:^|\s+)seed=\S+")


@dataclass
class Arm:
    """One configuration: its label and, per seed, final and best validation accuracy and
    final training accuracy (%; only the seeds whose trial records it)."""

    label: str
    key: str  # the configuration without seed, as JSON
    final: dict[int, float] = field(default_factory=dict)
    best: dict[int, float] = field(default_factory=dict)
    train: dict[int, float] = field(default_factory=dict)
    trials: dict[int, int] = field(default_factory=dict)  # seed → the trial number counted
    # seed → the counted trial's provenance (None: it records none)
    provenance: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    base_point: bool = False  # its configuration is the study's base configuration

    def values(self, metric: TableMetric) -> dict[int, float]:
        return self.final if metric == TableMetric.FINAL else self.best


def arm_label(label: str) -> str:
    """A trial's label without its seed part (``"tau=1e-06 seed=3"`` → ``"tau=1e-06"``)."""
    return _SEED.sub("", label).strip()


def point_key(config: dict[str, Any]) -> str:
    """What a configuration computes, seed left out: its seeds share this key."""
    return json.dumps(
        {k: v for k, v in config.items() if k != "seed" and k not in LOCAL}, sort_keys=True
    )


def group_arms(trials: Iterable[FrozenTrial], base: dict[str, Any]) -> list[Arm]:
    """The COMPLETE trials grouped by configuration without seed, in the order of each
    configuration's first counted trial; per (configuration, seed) the latest completed one.
    ``base``: the study's base configuration, which its trials store their difference from
    (:func:`bopsweep.store.trial_config.study_base`); the arm with that configuration is
    marked as the base point."""
    latest: dict[tuple[str, int], FrozenTrial] = {}
    base_key = base_point_key(base)
    for t in trials:
        if t.state.name != "COMPLETE" or t.value is None or not has_config(t.user_attrs):
            continue
        config = trial_config(t.user_attrs, base)
        slot = (point_key(config), int(config.get("seed", 0)))
        if slot not in latest or _when(t) > _when(latest[slot]):
            latest[slot] = t
    arms: dict[str, Arm] = {}
    for (key, seed), t in sorted(latest.items(), key=lambda kv: (kv[1].number, kv[0][1])):
        if key not in arms:
            label = arm_label(str(t.user_attrs.get(LABEL) or "")) or "base point"
            arms[key] = Arm(label, key, base_point=key == base_key)
        _add_seed(arms[key], seed, t)
    _disambiguate(list(arms.values()))
    for arm in arms.values():
        _sort_seeds(arm)
    return list(arms.values())


def base_point_key(base: dict[str, Any]) -> str | None:
    """The :func:`point_key` of the study's base configuration as its trials store theirs:
    resolved (an optimizer's unset γ, σ, τ get their defaults, as when the study was planned);
    None where the stored base does not resolve (no arm is then its base point)."""
    try:
        return point_key(TrialConfig.from_dict(dict(base), "the study's base").resolved().to_dict())
    except UserError:
        return None


def _add_seed(arm: Arm, seed: int, t: FrozenTrial) -> None:
    """A COMPLETE trial's accuracies as ``arm``'s values for ``seed``, in %."""
    final = float(t.value or 0.0)  # COMPLETE with a value: checked by the caller
    arm.final[seed] = 100 * final
    # the driver records the best epoch and the last training accuracy of every complete
    # trial; a trial made by other means without them counts its final accuracy as its best,
    # and has no training accuracy
    arm.best[seed] = 100 * float(t.user_attrs.get(BEST_VAL_ACC, final))
    train = t.user_attrs.get(FINAL_TRAIN_ACC)
    if isinstance(train, int | float) and not isinstance(train, bool) and math.isfinite(train):
        arm.train[seed] = 100 * float(train)
    arm.trials[seed] = t.number
    recorded = t.user_attrs.get(PROVENANCE)
    arm.provenance[seed] = recorded if isinstance(recorded, dict) else None


def _sort_seeds(arm: Arm) -> None:
    arm.final = dict(sorted(arm.final.items()))
    arm.best = dict(sorted(arm.best.items()))
    arm.train = dict(sorted(arm.train.items()))
    arm.trials = dict(sorted(arm.trials.items()))


def _when(t: FrozenTrial) -> tuple[float, int]:
    done = t.datetime_complete
    return (done.timestamp() if done is not None else -math.inf, t.number)


def _disambiguate(arms: list[Arm]) -> None:
    """Two configurations with one label (e.g. sampled values that round alike) get a short
    id of their configuration appended."""
    counts: dict[str, int] = {}
    for arm in arms:
        counts[arm.label] = counts.get(arm.label, 0) + 1
    for arm in arms:
        if counts[arm.label] > 1:
            arm.label += f" [{hashlib.sha1(arm.key.encode()).hexdigest()[:6]}]"


@dataclass(frozen=True)
class Row:
    arm: Arm
    final: Summary
    best: Summary
    train: Summary | None  # None: no trial of the arm records its training accuracy
    outcome: Outcome  # against the baseline, on the table's metric

    @property
    def baseline(self) -> bool:
        return self.outcome.verdict == "baseline"


@dataclass(frozen=True)
class Table:
    study: str
    metric: TableMetric
    rows: list[Row]
    chosen: str  # how the baseline was chosen, for the caption
    alpha: float = ALPHA
    provenance: str | None = None  # how the compared trials' provenance differs, if it does

    @property
    def baseline(self) -> Row:
        return next(r for r in self.rows if r.baseline)

    @property
    def tests(self) -> int:
        """The family Holm adjusts: the arms with a t-test against the baseline."""
        return sum(1 for r in self.rows if r.outcome.p_holm is not None)


BY_FLAG = "chosen with --baseline"
BY_BASE = "the study's base point"
BY_ORDER = "the study's first configuration; none is the study's base point"


def choose_baseline(arms: list[Arm], label: str | None = None) -> tuple[Arm, str]:
    """The arm the others are compared with, and how it was chosen: the one labelled ``label``
    (as the table prints it), else the study's base point, else the first arm (the study's
    order). One line listing the labels when ``label`` names none."""
    if label is not None:
        found = next((a for a in arms if a.label == label), None)
        if found is None:
            labels = ", ".join(repr(a.label) for a in arms)
            raise UserError(
                f"--baseline {label!r} is no configuration of the study; its labels: {labels}"
            )
        return found, BY_FLAG
    base = next((a for a in arms if a.base_point), None)
    return (base, BY_BASE) if base is not None else (arms[0], BY_ORDER)


def build_table(
    study: str,
    arms: list[Arm],
    metric: TableMetric = TableMetric.FINAL,
    alpha: float = ALPHA,
    baseline: str | None = None,
) -> Table:
    """Each arm's summaries, and its comparison with the baseline (:func:`choose_baseline`)
    on ``metric``."""
    reference, chosen = choose_baseline(arms, baseline)
    outcomes = compare_to_baseline(
        {arm.label: arm.values(metric) for arm in arms}, reference.label, alpha
    )
    rows = [
        Row(
            arm,
            summarize(list(arm.final.values()), alpha),
            summarize(list(arm.best.values()), alpha),
            summarize(list(arm.train.values()), alpha) if arm.train else None,
            outcomes[arm.label],
        )
        for arm in arms
    ]
    return Table(study, metric, rows, chosen, alpha, provenance_differences(arms))


def provenance_differences(arms: list[Arm]) -> str | None:
    """One sentence naming each provenance field (:mod:`bopsweep.trial.provenance`) in which the
    trials the table counts differ, with their values, and how many record none where others
    do; None where they agree (or none records any)."""
    recorded = [p for arm in arms for p in arm.provenance.values()]
    known = [p for p in recorded if p is not None]
    parts = []
    for name in PROVENANCE_FIELDS:
        values = sorted({str(p.get(name)) for p in known})
        if len(values) > 1:
            parts.append(f"{name} ({', '.join(values)})")
    if known and len(known) < len(recorded):
        parts.append(f"{len(recorded) - len(known)} of the {len(recorded)} record none")
    if not parts:
        return None
    return (
        "The trials compared were not all run alike; they differ in "
        + "; ".join(parts)
        + " (each trial's: bopsweep status --format json)."
    )
