"""Seed-averaged searches (``bopsweep optuna --seeds K``): every configuration the sampler
proposes trains on K seeds (seed, seed+1, …), and what the sampler learns from, what its
pruner judges and what Optuna reports as the configuration's value is the mean over them.

Where things live, and why. A search keeps two Optuna studies in the same storage:

* the study itself (``NAME``) holds the *seed runs*: every seed of every configuration is an
  ordinary bopsweep trial there, with its own folder, resume, retries, heartbeats and fencing
  (nothing of those contracts changes: the driver, ``status``, ``table`` and ``export`` read it
  as any study, and ``table`` groups the K runs of a configuration, which differ in the seed
  alone). Each run carries ``seed_of`` (the number of its configuration's trial in the
  companion study) and ``seed_index`` (0 … K-1);
* a companion study (``NAME:seed-means``; ':' is in no bopsweep study name, and bopsweep's
  commands list only studies with a definition, so it never shows as a study of its own) holds
  *one trial per configuration*: the trial the sampler asked for. It stays RUNNING while its
  seeds are owed and is then told COMPLETE with the mean final validation accuracy (PRUNED if a
  seed run was pruned, FAIL if one diverged or failed for good); its intermediate values are
  the mean learning curve over the epochs all K runs have done.

The sampler and pruner work on the companion study, so they see exactly one observation per
configuration (K COMPLETE copies of one configuration would make TPE over-weight it), and
``optuna trials --study-name 'NAME:seed-means'``, ``best-trial`` and optuna-dashboard show the
search as the sampler saw it, with mean values; ``--study-name NAME`` shows the runs. Keeping
the runs in one study with the configurations as extra trials of the same study was rejected:
the runs would have to end in a state Optuna's samplers skip (FAIL: bopsweep reads that as a
failure everywhere) or the configuration trials would stay RUNNING in the driver's own study
(judged stale and failed by every driver, re-queued as interrupted after a crash).

Crash safety: sampling a configuration, giving it its settings and queueing its K runs happen
under the study's lock; whatever a kill leaves half done is completed at the next start
(:meth:`SeedAveragedQueue.settle`, run with :meth:`~TrialQueue.requeue_lost`): a configured
companion trial whose runs are not all queued gets them (never a new sample in its place), one
never configured is failed, and one whose K runs all have results is told its mean.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bopsweep.attr_keys import (
    COMPANION_OF,
    CONFIG_ID,
    FAIL_REASON,
    FAILURE,
    LABEL,
    REQUEUED,
    SEED_INDEX,
    SEED_OF,
    SEED_RUNS,
    SEED_STD,
    SEED_VALUES,
    SEEDS,
)
from bopsweep.driver.outcome import describe
from bopsweep.driver.queue import TrialQueue, configured
from bopsweep.store.database import study_uuid
from bopsweep.store.optuna_adapter import add_waiting_trials, storage_of, trial_id
from bopsweep.studies import TrialConfig, config_id, describe_config

# optuna: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from bopsweep.studies.search import Search

SUFFIX = ":seed-means"

Runs = dict[int, list["FrozenTrial"]]  # a configuration's seed runs by seed index, oldest first


def companion_name(study_name: str) -> str:
    """The name of the study that holds a search's configurations (one trial each)."""
    return study_name + SUFFIX


def queue_for(study: optuna.Study, search: Search | None) -> TrialQueue:
    """The driver's queue: seed-averaged for a search with more than one seed."""
    if search is None or search.seeds == 1:
        return TrialQueue(study)
    return SeedAveragedQueue(study, search.seeds)


def delete_companion(storage: Any, study_name: str) -> None:
    """Delete a search's companion study, if it has one (``bopsweep delete``)."""
    import optuna

    name = companion_name(study_name)
    if name in {s.study_name for s in storage.get_all_studies()}:
        optuna.delete_study(study_name=name, storage=storage)


def means_study(study: optuna.Study) -> optuna.Study:
    """A seed-averaged search's companion study, loaded (it must exist)."""
    import optuna

    return optuna.load_study(study_name=companion_name(study.study_name), storage=storage_of(study))


def _companion(storage: Any, study_name: str) -> int | None:
    """The companion study's id, or None if there is none."""
    try:
        return int(storage.get_study_id_from_name(companion_name(study_name)))
    except KeyError:
        return None


def _owned(storage: Any, companion: int, owner: str | None) -> bool:
    """Whether a companion is the search's of the study of UUID ``owner``: its mark says so,
    or it has none and no trial yet (made, then killed before it was marked)."""
    mark = storage.get_study_user_attrs(companion).get(COMPANION_OF)
    return mark == owner if mark is not None else storage.get_n_trials(companion) == 0


def configurations(study: optuna.Study) -> list[dict[str, Any]] | None:
    """A seed-averaged search's configurations as ``status`` shows them (number, label, state,
    mean, sample std and the seeds' values, the runs' trial numbers), or None for a study
    without a companion of its own. Reads only."""
    storage = storage_of(study)
    found = _companion(storage, study.study_name)
    if found is None or not _owned(storage, found, study_uuid(study)):
        return None
    trials = storage.get_all_trials(found, deepcopy=False)
    return [
        {
            "configuration": t.number,
            "label": t.user_attrs.get(LABEL),
            "state": t.state.name,
            "mean": t.value,
            "std": t.user_attrs.get(SEED_STD),
            "seed_values": t.user_attrs.get(SEED_VALUES),
            "seed_runs": t.user_attrs.get(SEED_RUNS),
        }
        for t in trials
    ]


def seed_outcome(run: FrozenTrial | None) -> str | float | None:
    """What one seed's latest run says: its final validation accuracy, 'pruned',
    'diverged', 'failed' (for good), or None while it is owed (queued, running, or failed
    with its retry queued or to be restored by ``requeue_lost``)."""
    if run is None:
        return None
    state = run.state.name
    if state == "COMPLETE":
        return float(run.value) if run.value is not None else None
    if state == "PRUNED":
        return "pruned"
    if state == "FAIL":
        if run.user_attrs.get(FAILURE) == "diverged":
            return "diverged"
        return None if run.user_attrs.get(REQUEUED) else "failed"
    return None


def mean_curve(runs: Runs, seeds: int) -> dict[int, float]:
    """The mean over the K seeds of each epoch's validation accuracy, over the epochs all K
    have done (a seed's retry continues its curve: later runs override earlier ones)."""
    curves = []
    for index in range(seeds):
        curve: dict[int, float] = {}
        for run in runs.get(index, []):
            curve.update(run.intermediate_values)
        curves.append(curve)
    common = set.intersection(*(set(c) for c in curves)) if curves else set()
    return {step: statistics.fmean(c[step] for c in curves) for step in sorted(common)}


class SeedAveragedQueue(TrialQueue):
    """The queue of a seed-averaged search: samples configurations in the companion study and
    queues their seed runs; tells each configuration its mean once its runs end."""

    CARRIED_ATTRS = (SEED_OF, SEED_INDEX)  # a seed run's retry is still that seed's run

    def __init__(self, study: optuna.Study, seeds: int) -> None:
        super().__init__(study)
        self.seeds = seeds

    @cached_property
    def means(self) -> optuna.Study:
        """The companion study, made on first use (a driver only: reading commands never
        make it), with the search's sampler and pruner. A companion left by a study of this
        name that was deleted (another study's UUID on it) is deleted and made anew: its
        configurations are no search of this study's."""
        import optuna

        owner, name = study_uuid(self.study), companion_name(self.study.study_name)
        with self.locked():
            found = _companion(self.storage, self.study.study_name)
            if found is not None and not _owned(self.storage, found, owner):
                optuna.delete_study(study_name=name, storage=self.storage)
            means = optuna.create_study(
                storage=self.storage,
                study_name=name,
                direction=self.study.direction,
                sampler=self.study.sampler,
                pruner=self.study.pruner,
                load_if_exists=True,
            )
            if means.user_attrs.get(COMPANION_OF) != owner:
                means.set_user_attr(COMPANION_OF, owner)
        return means

    # --- sampling ---------------------------------------------------------------------------
    def ask(self, configure: Any) -> FrozenTrial | None:
        """A configuration from the sampler (in the companion study), its K seed runs queued,
        and the first queued run this driver could claim (None if others took them all)."""
        with self.locked():  # no settle() sees a configuration half made
            lead = self._ask_configuration(configure)
            add_waiting_trials(self.study, [self._seed_run(lead, i) for i in range(self.seeds)])
        return self.claim()

    def _ask_configuration(self, configure: Any) -> FrozenTrial:
        """A new trial of the companion study, configured; whatever fails, none is left
        RUNNING unconfigured."""
        first_new = len(self.means.get_trials(deepcopy=False))
        try:
            trial = self.means.ask()
        except BaseException as e:  # Optuna made the trial before its sampler failed
            for t in self.means.get_trials(deepcopy=False, states=(self._states.RUNNING,)):
                if t.number >= first_new and not configured(t):
                    self._end_configuration(t, "FAIL", {FAILURE: "error",
                                                        FAIL_REASON: describe(e)})  # fmt: skip
            raise
        tid = trial_id(trial)
        try:
            self.set_attrs(tid, {**configure(trial), SEEDS: self.seeds})
        except BaseException as e:
            self._end_configuration(self.storage.get_trial(tid), "FAIL",
                                    {FAILURE: "error", FAIL_REASON: describe(e)})  # fmt: skip
            raise
        return self.storage.get_trial(tid)

    def _seed_run(self, lead: FrozenTrial, index: int) -> FrozenTrial:
        """The WAITING trial of seed ``index`` of configuration ``lead`` (not yet added)."""
        values = self.config(lead)
        values["seed"] += index
        config = TrialConfig.from_dict(values, "a seed-averaged search").resolved()
        label = f"{describe_config(config)} seed={config.seed}"
        run = self.waiting(lead.params, config_id(config), label, config.to_dict(), 0,
                           lead.distributions)  # fmt: skip
        run.set_user_attr(SEED_OF, lead.number)
        run.set_user_attr(SEED_INDEX, index)
        return run

    # --- endings ----------------------------------------------------------------------------
    def tell(self, t: FrozenTrial | int, state: str, value: float | None = None) -> bool:
        """Finish a seed run, then tell its configuration the mean if that was its last."""
        told = super().tell(t, state, value)
        if told:
            self.settle()
        return told

    def requeue_lost(self) -> int:
        """Lost retries restored, then every configuration settled (see :meth:`settle`)."""
        restored = super().requeue_lost()
        self.settle()
        return restored

    def settle(self) -> None:
        """Bring every unfinished configuration up to date: queue the seed runs a kill left
        unqueued, fail one never configured, tell one whose runs all ended its outcome; and
        cancel (as PRUNED) the queued runs of a configuration that has ended."""
        with self.locked():
            runs = self._runs_by_configuration()
            leads = self.means.get_trials(deepcopy=False)
            for lead in leads:
                if lead.state.name != "RUNNING":
                    continue
                if not configured(lead):
                    reason = "the driver stopped before it was configured; not re-queued"
                    self._end_configuration(lead, "FAIL", {FAILURE: "interrupted",
                                                           FAIL_REASON: reason})  # fmt: skip
                    continue
                self._settle(lead, runs.get(lead.number, {}))
            self._cancel_orphans({t.number for t in self.means.get_trials(deepcopy=False)
                                  if t.state.is_finished()})  # fmt: skip

    def _settle(self, lead: FrozenTrial, runs: Runs) -> None:
        missing = [i for i in range(self.seeds) if not runs.get(i)]
        if missing:  # killed between sampling and queueing: its runs, never a new sample
            add_waiting_trials(self.study, [self._seed_run(lead, i) for i in missing])
            return
        outcomes = [seed_outcome(runs[i][-1]) for i in range(self.seeds)]
        numbers = [runs[i][-1].number for i in range(self.seeds)]
        attrs: dict[str, Any] = {SEED_RUNS: numbers}
        if "pruned" in outcomes:
            self._end_configuration(lead, "PRUNED", attrs)
        elif "diverged" in outcomes or "failed" in outcomes:
            which = "diverged" if "diverged" in outcomes else "failed"
            attrs |= {FAILURE: which, FAIL_REASON: f"a seed run {which}"}
            self._end_configuration(lead, "FAIL", attrs)
        elif all(isinstance(o, float) for o in outcomes):
            values = [float(o) for o in outcomes if isinstance(o, float)]
            for step, mean in mean_curve(runs, self.seeds).items():
                if lead.intermediate_values.get(step) != mean:
                    self.storage.set_trial_intermediate_value(trial_id(lead), step, mean)
            # the sample std (ddof 1), as bopsweep table's
            attrs |= {SEED_VALUES: values, SEED_STD: statistics.stdev(values)}
            self._end_configuration(lead, "COMPLETE", attrs, statistics.fmean(values))

    def _end_configuration(
        self, lead: FrozenTrial, state: str, attrs: dict[str, Any], value: float | None = None
    ) -> None:
        """Tell a configuration's trial (in the companion study) how it ended."""
        tid = trial_id(lead)
        for key, v in attrs.items():
            self.storage.set_trial_user_attr(tid, key, v)
        if state == "COMPLETE":
            self.means.tell(lead.number, value, skip_if_finished=True)
        else:
            self.means.tell(lead.number, state=self._states[state], skip_if_finished=True)

    def _cancel_orphans(self, finished: set[int]) -> None:
        """Queued seed runs of a configuration that has ended (pruned, failed) never run:
        each is claimed (atomic, so racing drivers cancel it once) and ended PRUNED."""
        for t in self.trials("WAITING"):
            if t.user_attrs.get(SEED_OF) not in finished:
                continue
            if not self.storage.set_trial_state_values(trial_id(t), self._states.RUNNING):
                continue
            self.storage.set_trial_user_attr(
                trial_id(t), "cancelled", "another seed run of its configuration ended it"
            )
            self.study.tell(t.number, state=self._states.PRUNED)

    def _runs_by_configuration(self) -> dict[int, Runs]:
        """The study's seed runs: by configuration (companion trial number), then seed index."""
        trials = sorted(self.trials(), key=lambda t: t.number)
        # a run queued again without its marks (by a bopsweep before retries carried them) is
        # its configuration's by its config_id, which only that seed of it has
        marks = {
            t.user_attrs.get(CONFIG_ID): (t.user_attrs[SEED_OF], t.user_attrs.get(SEED_INDEX, 0))
            for t in trials
            if SEED_OF in t.user_attrs
        }
        out: dict[int, Runs] = defaultdict(lambda: defaultdict(list))
        for t in trials:
            mark = marks.get(t.user_attrs.get(CONFIG_ID))
            if mark is not None:
                out[mark[0]][mark[1]].append(t)
        return out

    # --- pruning and totals -----------------------------------------------------------------
    def should_prune(self, tid: int) -> bool:
        """Judge a seed run by its configuration's mean learning curve (over the epochs all K
        runs have done), written as the configuration's intermediate values."""
        run = self.trial(tid)
        if SEED_OF not in run.user_attrs:
            return super().should_prune(tid)
        lead = self.means.get_trials(deepcopy=False)[run.user_attrs[SEED_OF]]
        if lead.state.is_finished():  # a pruned configuration prunes its other runs
            return lead.state.name == "PRUNED"
        runs = self._runs_by_configuration().get(lead.number, {})
        new = {
            step: mean
            for step, mean in mean_curve(runs, self.seeds).items()
            if lead.intermediate_values.get(step) != mean
        }
        if not new:  # nothing new to judge (the other seeds are behind)
            return False
        for step, mean in new.items():
            self.storage.set_trial_intermediate_value(trial_id(lead), step, mean)
        return self.means.pruner.prune(self.means, self.storage.get_trial(trial_id(lead)))

    def counted(self) -> int:
        """Configurations, not seed runs: the companion study's trials (one that failed
        before it was configured does not count)."""
        return sum(
            configured(t) or t.state.name != "FAIL" for t in self.means.get_trials(deepcopy=False)
        )
