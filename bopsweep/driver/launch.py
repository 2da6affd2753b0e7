"""Starting trials: which trials the next process trains, and the process that trains them.

The next process gets a trial claimed from the queue (or, in a search, a new one from the
sampler) and, with ``--stack K``, up to K-1 more that can share one process
(:data:`~bopsweep.trial.config.STACK_SHARED`). Each trains in its configuration's own folder,
adopted as this study's first (:func:`~bopsweep.driver.folder_owner.adopt`).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep.attr_keys import ATTEMPT, CONFIG_ID, LABEL
from bopsweep.driver.folder_owner import adopt
from bopsweep.driver.process import Slot, TrialProcess
from bopsweep.driver.state import Running
from bopsweep.store.fencing import OWNER_ATTR
from bopsweep.store.optuna_adapter import trial_id
from bopsweep.store.trial_config import config_attrs
from bopsweep.studies import config_id, describe_config
from bopsweep.studies.search import suggest
from bopsweep.trial.config import stack_key

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from bopsweep.driver.queue import TrialQueue
    from bopsweep.driver.warm import Zygotes
    from bopsweep.studies.search import Search

Events = queue.Queue[tuple[Running, dict[str, Any] | None]]


class Launcher:
    """Picks and starts the trials of each new trial process of one driver."""

    def __init__(
        self,
        trials: TrialQueue,
        search: Search | None,
        stack: int,
        checkpoint_root: Path,
        local: dict[str, Any],
        identity: tuple[str, str] | None,
        note: Callable[[str], None],
    ) -> None:
        self.queue, self.search, self.stack, self.note = trials, search, stack, note
        self.checkpoint_root, self.local, self.identity = checkpoint_root, local, identity
        # sampled trials join a stack when every one shares what a stack must (the norm alone
        # of those is searched); one that cannot waits here for a slot of its own
        self.stack_samples = search is not None and (
            "norm" in search.space.fixed or len(search.space.norms) == 1
        )
        self.held: list[FrozenTrial] = []  # claimed (RUNNING), waiting for a free slot
        self.events: Events = queue.Queue()  # every process's messages, for the driver's loop
        self.zygotes: Zygotes | None = None  # while the driver runs, with warm starts

    def next_trials(self) -> list[FrozenTrial]:
        """The trials of the next process: one, or up to ``--stack`` that can share one
        (:data:`~bopsweep.trial.config.STACK_SHARED`), queued ones first."""
        first = self.held.pop(0) if self.held else self.queue.claim() or self.sample()
        if first is None or self.stack == 1:
            return [] if first is None else [first]
        key = stack_key(self.queue.config(first))
        trials = [first]
        while len(trials) < self.stack:
            trial = self.queue.claim(lambda config: stack_key(config) == key)
            if trial is None and self.stack_samples:
                trial = self.sample()
                if trial is not None and stack_key(self.queue.config(trial)) != key:
                    self.held.append(trial)
                    break
            if trial is None:
                break
            trials.append(trial)
        return trials

    def sample(self) -> FrozenTrial | None:
        """A new trial from the sampler, while the study holds fewer than its total."""
        if self.search is None or self.queue.counted() >= self.search.trials:
            return None
        search = self.search

        def configure(trial: optuna.Trial) -> dict[str, Any]:
            config = suggest(trial, search.space, search.base)
            return {
                CONFIG_ID: config_id(config),
                LABEL: describe_config(config),
                # against the base the study stores (its trials are rebuilt from that one)
                **config_attrs(config.to_dict(), self.queue.base),
                ATTEMPT: 0,
            }

        return self.queue.ask(configure)

    def start(self, trials: list[FrozenTrial], slot: Slot) -> list[Running]:
        """Start a trial process for ``trials`` (one, or a stack of several), each in its
        configuration's own folder (no database write here: a failed write must not orphan
        it)."""
        runs: list[Running] = []
        jobs: list[dict[str, Any]] = []
        for trial in trials:
            attrs = trial.user_attrs
            run_dir = self.checkpoint_root / attrs[CONFIG_ID]
            if adopt(run_dir, attrs[CONFIG_ID], self.identity):
                self.note(f"{run_dir} held a run on other data (or another study's); started over")
            stored = self.queue.config(trial)
            config = {**stored, **self.local, "device": slot.device}
            runs.append(
                Running(
                    trial.number,
                    trial_id(trial),
                    attrs[CONFIG_ID],
                    attrs.get(LABEL, ""),
                    stored,
                    slot,
                    attrs.get(ATTEMPT, 0),
                    config["epochs"],
                    retry_of=trial.system_attrs.get("failed_trial"),
                    member=len(runs) if len(trials) > 1 else None,
                    run_dir=run_dir,
                    owner=trial.system_attrs.get(OWNER_ATTR),
                )
            )
            owner = runs[-1].owner  # the trial process checks it against the folder's
            # only a retry of an attempt the database failed as lost may ask a live process in
            # its folder to leave: two live attempts of one configuration never evict each other
            take_over = runs[-1].retry_of is not None
            jobs.append(
                {"config": config, "run_dir": str(run_dir), "owner": owner, "take_over": take_over}
            )
        single = {**jobs[0]["config"], "owner": jobs[0]["owner"], "take_over": jobs[0]["take_over"]}
        job = single if len(jobs) == 1 else {"stack": jobs}

        def on_message(message: dict[str, Any] | None) -> None:
            if message is None or message["type"] == "provenance":  # every member's
                for r in runs:
                    self.events.put((r, message))
            else:
                self.events.put((runs[message.get("member", 0)], message))

        # a stack's stderr (one process) goes to every member's trial.log
        logs = [self.checkpoint_root / r.config_id / "trial.log" for r in runs]
        process = TrialProcess(logs[0].parent, slot, job, on_message, self.zygotes, logs)
        for r in runs:
            r.process = process
        return runs
