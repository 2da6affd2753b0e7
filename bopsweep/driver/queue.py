"""A study's trials as the driver sees them: a queue in Optuna's storage.

Optuna stores every trial; bopsweep queues a configuration as a WAITING trial whose user
attributes hold it (``config_id``, ``label``, ``attempt`` and ``config_delta``, what differs
from the study's base configuration: :mod:`bopsweep.store.trial_config`). A driver claims one by
moving it to RUNNING (atomic in the storage, so racing drivers never share one), and ends it
with ``study.tell``. Optuna cannot reopen a finished trial, so a retry is a new WAITING trial
with the same configuration. Everything the driver asks of Optuna goes through here, and the
storage through :mod:`bopsweep.store.optuna_adapter`; what the study holds is read by
:mod:`bopsweep.driver.study_trials`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, cast

from bopsweep.attr_keys import ATTEMPT, CONFIG_ID, FAIL_REASON, FAILURE, LABEL, OWNER_ATTR, REQUEUED
from bopsweep.driver.outcome import describe
from bopsweep.driver.study_trials import StudyTrials, configured
from bopsweep.errors import UserError
from bopsweep.store.fencing import new_owner
from bopsweep.store.optuna_adapter import (
    add_waiting_trials,
    running_config_ids,
    running_without_heartbeat,
    set_trial_user_attrs,
    trial_id,
    waiting_trial_ids,
)
from bopsweep.store.trial_config import config_attrs
from bopsweep.studies import param_distributions

# optuna: imported where used, as a trial process loads this module

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from bopsweep.studies import PlannedTrial

    class _HeartbeatStorage(Protocol):
        """A storage with heartbeats: Optuna's RDBStorage (and the cache Optuna puts around it)."""

        def record_heartbeat(self, trial_id: int) -> None: ...


def fit_stored(
    params: dict[str, Any], planned: dict[str, Any], stored: dict[str, Any]
) -> dict[str, Any]:
    """A trial's planned distributions, made compatible with those the study already stores
    (Optuna refuses a param whose distribution is incompatible with an earlier trial's: another
    kind, another log flag, other choices). Only a study queued by an earlier bopsweep differs
    (one-point floats, categoricals over every choice): a new trial then takes the stored
    categorical, or the stored log flag over its planned range. A definition cannot change
    under a study (:meth:`~bopsweep.store.database.Store.create` refuses it)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
        check_distribution_compatibility,
    )

    out = dict(planned)
    for name, dist in planned.items():
        old = stored.get(name)
        if old is None:
            continue
        try:
            check_distribution_compatibility(old, dist)
            continue
        except ValueError:
            pass
        value = params[name]
        if isinstance(old, CategoricalDistribution) and value in old.choices:
            out[name] = old
        elif isinstance(old, FloatDistribution) and isinstance(dist, FloatDistribution):
            out[name] = FloatDistribution(dist.low, dist.high, log=old.log and dist.low > 0)
        elif isinstance(old, IntDistribution) and isinstance(dist, IntDistribution):
            out[name] = IntDistribution(dist.low, dist.high, log=old.log and dist.low > 0)
        else:
            raise UserError(
                f"the study already stores param {name!r} as {old}; {value!r} does not fit it; "
                "run this study under another --study name"
            )
    return out


class TrialQueue(StudyTrials):
    """The queue of one Optuna study: queueing, claiming and ending its trials (what it holds:
    :class:`~bopsweep.driver.study_trials.StudyTrials`)."""

    # what a retry keeps of the trial it continues, besides its configuration and label
    CARRIED_ATTRS: tuple[str, ...] = ()

    # --- queueing -------------------------------------------------------------------------------
    def enqueue_missing(self, planned: Iterable[PlannedTrial]) -> int:
        """Queue every planned configuration the study does not already hold; how many were
        new. Under the study's lock: the read and the inserts are one step for other drivers."""
        with self.locked():
            return self._enqueue_missing(planned)

    def _enqueue_missing(self, planned: Iterable[PlannedTrial]) -> int:
        existing = self.held_configs()
        stored: dict[str, Any] = {}
        for t in self.trials():
            for name, dist in t.distributions.items():
                stored.setdefault(name, dist)
        new = []
        for p in planned:
            if p.config_id not in existing:
                distributions = fit_stored(p.params, p.distributions, stored)
                config = p.config.to_dict()
                new.append(self.waiting(p.params, p.config_id, p.label, config, 0, distributions))
        add_waiting_trials(self.study, new)  # one transaction, not one per trial
        return len(new)

    def enqueue(self, *args: Any, **kwargs: Any) -> None:
        """Queue a configuration as a WAITING trial (the arguments of :meth:`waiting`)."""
        self.study.add_trial(self.waiting(*args, **kwargs))

    def waiting(
        self,
        params: dict[str, Any],
        config_id: str,
        label: str,
        config: dict[str, Any],
        attempt: int,
        distributions: Any = None,
    ) -> FrozenTrial:
        """The WAITING trial that queues ``config`` (the full configuration), not yet added to
        the study; it stores only what differs from the study's base."""
        import optuna

        return optuna.trial.create_trial(
            state=self._states.WAITING,
            params=params,
            distributions=distributions or param_distributions(params),
            user_attrs={
                CONFIG_ID: config_id,
                LABEL: label,
                **config_attrs(config, self.base),
                ATTEMPT: attempt,
            },
        )

    def requeue(self, t: FrozenTrial, attempt: int) -> None:
        """Queue a trial's configuration again, as a new trial (Optuna cannot reopen one), with
        the attributes a retry carries (:attr:`CARRIED_ATTRS`)."""
        attrs = t.user_attrs
        retry = self.waiting(
            t.params, attrs[CONFIG_ID], attrs.get(LABEL, ""), self.config(t), attempt,
            t.distributions,
        )  # fmt: skip
        for name in self.CARRIED_ATTRS:
            if name in attrs:
                retry.set_user_attr(name, attrs[name])
        self.study.add_trial(retry)

    def claim(self, fits: Callable[[dict[str, Any]], bool] | None = None) -> FrozenTrial | None:
        """The first WAITING trial this driver could move to RUNNING; None when none is left.
        A trial queued by another tool (no bopsweep configuration) is failed on the way.
        ``fits``: claim only a trial whose configuration it accepts (a stack's next member).
        The claimed attempt gets an owner token (:meth:`own`), which its writes must carry."""
        import optuna

        # a configuration runs once at a time: a copy queued while it runs (a retry that found
        # its folder busy, a sampled duplicate) waits until it ends
        running = running_config_ids(self.study)
        for tid in waiting_trial_ids(self.study):  # not every waiting trial loaded
            if running or fits is not None:  # then loaded one by one until one may run
                candidate = self.trial(tid)
                if candidate.user_attrs.get(CONFIG_ID) in running:
                    continue
                if fits is not None and not (
                    configured(candidate) and fits(self.config(candidate))
                ):
                    continue
            try:
                if not self.storage.set_trial_state_values(tid, self._states.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            t = self.trial(tid)
            if configured(t):
                return self.own(t)
            self.fail_untracked(t, "error", "queued without a bopsweep configuration")
        return None

    def own(self, t: FrozenTrial) -> FrozenTrial:
        """Give a trial this driver just moved to RUNNING a fresh owner token (stored with
        it: :mod:`bopsweep.store.fencing`); the trial as stored now. Optuna refuses the write
        if another driver has failed the trial meanwhile."""
        self.storage.set_trial_system_attr(trial_id(t), OWNER_ATTR, new_owner())
        return self.trial(trial_id(t))

    def ask(self, configure: Any) -> FrozenTrial | None:
        """A new trial from the study's sampler, given its configuration by ``configure(trial)``
        (which returns its user attributes). Whatever fails, no trial is left RUNNING."""
        first_new = len(self.trials())
        try:
            trial = self.study.ask()
        except BaseException as e:  # Optuna made the trial before its sampler failed
            for t in self.trials("RUNNING"):
                if t.number >= first_new and not configured(t):
                    self.fail_untracked(t, "error", describe(e))
            raise
        try:
            self.set_attrs(trial_id(trial), configure(trial))
            return self.own(self.trial(trial_id(trial)))
        except BaseException as e:
            self.fail_untracked(self.trial(trial_id(trial)), "error", describe(e))
            raise

    # --- endings --------------------------------------------------------------------------------
    def set_attrs(self, tid: int, attrs: dict[str, Any]) -> None:
        """Set a trial's user attributes, all in one transaction."""
        set_trial_user_attrs(self.study, tid, attrs)

    def tell(self, t: FrozenTrial | int, state: str, value: float | None = None) -> bool:
        """Finish a trial (``t``: the trial or its id); False if it was already finished (by an
        earlier write whose answer was lost, or by another driver that judged it stale)."""
        current = self.trial(t if isinstance(t, int) else trial_id(t))
        if current.state.is_finished():
            return False
        if state == "COMPLETE":
            self.study.tell(current.number, value)
        else:
            self.study.tell(current.number, state=self._states[state])
        return True

    def fail(self, t: FrozenTrial, failure: str, reason: str, requeue: int | None) -> None:
        """FAIL a trial no process runs for, with its reason; re-queued at attempt ``requeue``
        unless that is None."""
        attrs = {FAILURE: failure, FAIL_REASON: reason, REQUEUED: requeue is not None}
        with self.locked():  # the end and its retry as one step for other drivers' queueing
            self.set_attrs(trial_id(t), attrs)
            self.tell(t, "FAIL")
            if requeue is not None:
                self.requeue(t, requeue)

    def fail_untracked(self, t: FrozenTrial, failure: str, reason: str) -> None:
        """Fail a trial no trial process runs for, and re-queue its configuration (if it has
        one: a trial the sampler created but that was never configured has none)."""
        if not configured(t):
            reason += "; it was never configured, so it is not re-queued"
            self.fail(t, failure, reason, requeue=None)
        else:
            self.fail(t, failure, reason, requeue=t.user_attrs.get(ATTEMPT, 0))

    def recover_stale(self) -> int:
        """Trials left RUNNING by a driver that died: failed as interrupted and re-queued.

        Only called while holding the database's driver lock (SQLite), when no other driver
        can own a running trial.
        """
        stale = self.trials("RUNNING")
        for t in stale:
            self.fail_untracked(t, "interrupted", "the driver stopped while it ran")
        return len(stale)

    def requeue_lost(self) -> int:
        """Retries a driver was stopped before it queued: configurations whose last trial
        FAILed marked ``requeued`` and that no trial holds (waiting, running or with a result).

        Optuna cannot end a trial and add its retry in one transaction, and every ending marks
        ``requeued`` before the FAIL, so a kill, Ctrl-C or full disk between the two leaves
        exactly this. A grid would queue the configuration again as missing; a search plans
        nothing, so without this its trial was lost. The retry's attempt is the one the
        ending chose: the same after an interruption, the next after a crash. Under the study's
        lock, so drivers that start together re-queue it once."""
        with self.locked():
            return self._requeue_lost()

    def _requeue_lost(self) -> int:
        held = self.held_configs()
        last: dict[str, FrozenTrial] = {}  # each unheld configuration's last failed trial
        for t in self.trials("FAIL"):
            if not configured(t) or (cid := t.user_attrs[CONFIG_ID]) in held:
                continue
            if cid not in last or t.number > last[cid].number:
                last[cid] = t
        lost = [t for t in last.values() if t.user_attrs.get(REQUEUED)]
        for t in lost:
            attempt = t.user_attrs.get(ATTEMPT, 0)
            # an interruption or a busy folder uses up no retry (as their endings chose)
            self.requeue(t, attempt + (t.user_attrs.get(FAILURE) not in ("interrupted", "busy")))
        return len(lost)

    # --- while trials run -----------------------------------------------------------------------
    def report(self, tid: int, epoch: int, val_acc: float) -> None:
        """An epoch's validation accuracy as the trial's intermediate value (what Optuna's
        tools and pruners see as its learning curve)."""
        self.storage.set_trial_intermediate_value(tid, epoch, val_acc)

    def should_prune(self, tid: int) -> bool:
        return self.study.pruner.prune(self.study, self.trial(tid))

    def heartbeat(self, tid: int) -> None:
        # called only with heartbeats configured, which bopsweep does on RDB storages alone
        cast("_HeartbeatStorage", self.storage).record_heartbeat(tid)

    def fail_stale(self) -> None:
        """Other drivers' trials without a heartbeat for the grace period: failed and re-queued
        (by the storage's stale-trial callback). A RUNNING trial that never had a heartbeat (its
        driver was cut off as it claimed it) gets one now, so it is judged like the others."""
        import optuna

        for tid in running_without_heartbeat(self.study):
            self.heartbeat(tid)
        with warnings.catch_warnings(), self.locked():  # the retry queued under the lock
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
