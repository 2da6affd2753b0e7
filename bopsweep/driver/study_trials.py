"""What a study holds, as the driver reads it: its trials in Optuna's storage, each configured
trial's full configuration, which configurations have a result or are queued, and the counts a
search stops on. Also the study's lock, which the queue's reads-then-writes take
(:class:`~bopsweep.driver.queue.TrialQueue` adds the writes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bopsweep.attr_keys import CONFIG_ID, FAILURE
from bopsweep.store.fencing import study_lock
from bopsweep.store.optuna_adapter import engine_of, storage_of
from bopsweep.store.trial_config import is_configured, study_base, trial_config

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def configured(trial: FrozenTrial) -> bool:
    """Whether bopsweep gave the trial its configuration (it can run and be re-queued)."""
    return is_configured(trial.user_attrs)


def holds_result_or_is_pending(trial: FrozenTrial) -> bool:
    """A trial whose configuration need not be queued again."""
    if trial.state.name == "FAIL":
        return trial.user_attrs.get(FAILURE) == "diverged"  # a result, not an accident
    return True


class StudyTrials:
    """The trials of one Optuna study, read."""

    def __init__(self, study: optuna.Study) -> None:
        import optuna

        self.study = study
        self.storage = storage_of(study)
        self._lock_depth = 0  # how deep this driver is in the study's lock (:meth:`locked`)
        self._states = optuna.trial.TrialState

    @cached_property
    def base(self) -> dict[str, Any]:
        """The study's base configuration, which its trials store their difference from. Read
        once: only its local settings (data path, device) may change under a running study
        (another machine's driver), and trials never store those."""
        return study_base(self.study.user_attrs)

    def config(self, t: FrozenTrial) -> dict[str, Any]:
        """A configured trial's full configuration."""
        return trial_config(t.user_attrs, self.base)

    def trials(self, *states: str) -> list[FrozenTrial]:
        """The study's trials (in the given states, by name)."""
        wanted = tuple(self._states[s] for s in states) if states else None
        return self.study.get_trials(deepcopy=False, states=wanted)

    def trial(self, tid: int) -> FrozenTrial:
        return self.storage.get_trial(tid)

    def is_finished(self, tid: int) -> bool:
        return self.trial(tid).state.is_finished()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The study's lock (:func:`~bopsweep.store.fencing.study_lock`) around reading what
        it holds and queueing because of it: drivers that start together queue a
        configuration once."""
        engine = engine_of(self.study)
        if engine is None or self._lock_depth:  # held already, by this driver (reentrant)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with study_lock(engine, self.study.study_name):
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1

    def held_configs(self) -> set[str]:
        """The configuration ids the study holds a result of, or has queued or running."""
        return {
            t.user_attrs[CONFIG_ID]
            for t in self.trials()
            if CONFIG_ID in t.user_attrs and holds_result_or_is_pending(t)
        }

    def finished_configs(self) -> set[str]:
        """The configuration ids with a result: complete, pruned, or diverged."""
        return {
            t.user_attrs[CONFIG_ID]
            for t in self.trials("COMPLETE", "PRUNED", "FAIL")
            if CONFIG_ID in t.user_attrs and holds_result_or_is_pending(t)
        }

    def counted(self) -> int:
        """Trials that count towards a search's total: one per configuration (a retry, under a
        new number, continues the same configuration); a trial that failed before it was
        configured does not count."""
        return len(
            {
                t.user_attrs.get(CONFIG_ID) or f"#{t.number}"  # '#n': being configured now
                for t in self.trials()
                if configured(t) or t.state.name != "FAIL"
            }
        )

    def count(self, state: str) -> int:
        return len(self.trials(state))

    def all_configs_complete(self) -> bool:
        trials = self.trials()
        done = {t.user_attrs.get(CONFIG_ID) for t in trials if t.state.name == "COMPLETE"}
        return {t.user_attrs[CONFIG_ID] for t in trials if configured(t)} <= done
