"""Run a study: create (or join) it, queue what is missing, and drive its trials to the end.

The one entry point of every study command (``grid``, ``pow10``, ``schedule``, ``run``,
``optuna``, ``resume``, ``worker``): :func:`run_study` with the study's
:class:`~bopsweep.studies.StudySpec` and the :class:`DispatchOptions` of the command line.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bopsweep import defaults as d
from bopsweep.attr_keys import CONFIG_ID
from bopsweep.driver.loop import Driver, LoopSettings
from bopsweep.driver.outage import DatabaseLost, database_errors
from bopsweep.driver.process import Slot, make_slots
from bopsweep.driver.queue import configured
from bopsweep.errors import UserError
from bopsweep.files import check_folder_target
from bopsweep.folders import make_root, open_study_folder, study_folder_name
from bopsweep.readers.tensorboard import check_logdir, study_logdir
from bopsweep.store import (
    LEGACY_ATTR,
    SPEC_ATTR,
    Store,
    checkpoint_base,
    database_file,
    driver_lock,
    redact,
    study_uuid,
)
from bopsweep.store.failures import is_permission_denied, permission_message, reason
from bopsweep.studies import StudySpec, expand
from bopsweep.studies.designs import SearchDesign
from bopsweep.studies.samplers import make_pruner, make_sampler
from bopsweep.studies.search import Search
from bopsweep.studies.stored import spec_from_stored
from bopsweep.trial.cifar_files import fingerprint, resolve_data_dir
from bopsweep.trial.config import check_device

if TYPE_CHECKING:
    import optuna

    from bopsweep.driver.queue import TrialQueue
    from bopsweep.driver.state import Display
    from bopsweep.studies import PlannedTrial, StudySpec


@dataclass
class DispatchOptions:
    """Where and how a study's trials run (the command line's dispatch options)."""

    storage: str
    checkpoint_dir: Path | None = None
    device: str = d.DEVICE
    gpus: list[int] | None = None
    per_gpu: int | None = None  # None: d.PER_GPU on GPUs (given, it is refused on the CPU)
    workers: int | None = None
    oversubscribe: bool = False  # more trial processes than the machine holds
    max_retries: int = d.MAX_RETRIES
    data_dir: str | None = None
    download: bool = False
    worker_index: int = 0
    heartbeat_interval: int = d.HEARTBEAT_INTERVAL
    grace_period: int = d.GRACE_PERIOD
    queue_only: bool = False
    max_trials: int = d.MAX_TRIALS
    tensorboard: Path | None = None  # a TensorBoard run per trial in TENSORBOARD/STUDY/
    warm_starts: bool = d.WARM_STARTS
    stack: int = d.STACK  # trials per process (bopsweep.models.stacked)
    join: bool = False  # worker, resume: run an existing study, never make one (Store.join)

    def check(self) -> None:
        """Every option valid, before anything is created or changed."""
        if self.max_retries < 0:
            raise UserError(f"--max-retries must be >= 0, got {self.max_retries}")
        if not 1 <= self.stack <= d.MAX_STACK:
            raise UserError(f"--stack must be in 1 … {d.MAX_STACK}, got {self.stack}")
        if self.heartbeat_interval < 1 or self.grace_period < 2 * self.heartbeat_interval:
            raise UserError(
                "--heartbeat-interval must be >= 1 s and --grace-period at least twice it "
                f"(got {self.heartbeat_interval} and {self.grace_period})"
            )
        check_device(self.device)
        if self.tensorboard is not None:
            check_logdir(self.tensorboard, database_file(self.storage), self.own_folders())

    def own_folders(self) -> list[Path]:
        """The folders of this run's trials that no output may land on (beyond those beside
        a SQLite file and those marked as bopsweep's)."""
        return [self.checkpoint_dir] if self.checkpoint_dir is not None else []


def run_study(
    spec: StudySpec,
    options: DispatchOptions,
    echo: Callable[[str], Any] = print,
    display: Display | None = None,
) -> int:
    """Create (or join) the study, queue what is missing, run it to the end; the exit code.

    Ctrl-C or SIGTERM at any moment, setting up included, ends it with 130 and the command
    that continues it; nothing is left RUNNING that ``resume`` could not pick up. ``display``
    shows the trials as they run (the command line's; none: nothing shown).
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_hup = signal.signal(signal.SIGHUP, _hang_up)  # an ssh session that drops
    try:
        with _signals_deferred():  # the slow imports: a signal in the middle of one is fatal
            import optuna  # noqa: F401

            if options.device != "cpu":  # counting the GPUs imports torch; else the driver
                import torch  # noqa: F401  # never does (its trial processes do)
        code = _run_study(spec, options, echo, display)
    except KeyboardInterrupt:
        code = 130
    except DatabaseLost as e:  # after the loop (the loop reports its own)
        print(f"bopsweep: error: {e}", file=sys.stderr)
        code = 1
    except database_errors() as e:
        # setting up (the loop rides out or reports its own): say why, in one line
        _refuse_if_not_allowed(e, options.storage)
        print(f"bopsweep: error: {_cannot_write(e, options.storage)}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, previous_hup)
    if code == 130:
        echo(
            f"interrupted; finished trials are saved. Continue with: bopsweep resume "
            f"--storage {redact(options.storage)} --study {spec.name}"
        )
    return code


def _refuse_if_not_allowed(e: BaseException, url: str) -> None:
    """A role that may not write (permission denied) is bad input: exit 2, not 1."""
    if is_permission_denied(e):
        raise UserError(permission_message(e, url)) from None


def _cannot_write(e: BaseException, url: str) -> str:
    return (  # the innermost cause: Optuna's wrapper says only "commit"
        f"cannot write to the database {redact(url)} ({reason(e, url)}); "
        "finished trials and epochs are kept: fix it (free some disk space?) and run the "
        "same command again"
    )


def _run_study(
    spec: StudySpec,
    options: DispatchOptions,
    echo: Callable[[str], Any],
    display: Display | None,
) -> int:
    """:func:`run_study`'s work: check, open the study and its folder, queue, run, sum up."""

    checked = check_run(spec, options)  # all valid before anything is written
    planned, slots = checked.planned, checked.slots
    # resolved once here (downloading if asked), so trial processes never download
    local: dict[str, Any] = {"data_dir": str(checked.data_dir.resolve()), "download": False}
    # the study keeps what it needs to be resumed without repeating the options
    spec = replace(spec, base=replace(spec.base, data_dir=local["data_dir"], download=False))
    data = None if options.queue_only else fingerprint(checked.data_dir)
    if not options.queue_only:
        make_root(checked.root)  # a root that cannot be made stops here, the database untouched
    shared = not options.storage.startswith("sqlite")
    beat = (options.heartbeat_interval, options.grace_period, options.max_retries)
    store = Store(options.storage, create=True, heartbeat=beat if shared else None)
    with driver_lock(options.storage):
        study = store.join(spec.name) if options.join else store.create(spec)[0]
        legacy = study.user_attrs.get(LEGACY_ATTR) is True  # its folder: ROOT/NAME until moved
        identity = study_uuid(study)
        assert identity is not None  # create() and join() give every study one
        root = checked.root / study_folder_name(spec.name, identity)
        if data is not None:
            root = open_study_folder(checked.root, spec.name, identity, data if legacy else None)
        search = search_of(spec, study, options.worker_index)
        driver = Driver(
            store,
            study,
            slots,
            root,
            local,
            display,
            search,
            _loop_settings(spec, options, shared, (identity, data or "")),
        )
        _queue_at_start(driver, spec, options, planned, slots, echo)
        if options.queue_only:
            return 0
        with display or contextlib.nullcontext():
            code = driver.run()
        # the end's reads ride out an outage as the loop does: a finished study is no failure
        code = driver.outage.ride_out(lambda: _undone_is_failure(code, spec.name, driver.queue))
    if code != 130:
        trials = driver.outage.ride_out(lambda: study.get_trials(deepcopy=False))
        done = sum(t.state.name == "COMPLETE" for t in trials)
        pruned = f", {driver.counts['pruned']} pruned" if search is not None else ""
        echo(
            f"study {spec.name}: {done} trials complete{pruned}, {driver.counts['failed']} "
            f"failed; checkpoints in {root}"
        )
    return code


def _loop_settings(
    spec: StudySpec, options: DispatchOptions, shared: bool, identity: tuple[str, str]
) -> LoopSettings:
    """The loop's settings from the run's options (heartbeats only on a shared database)."""
    return LoopSettings(
        max_retries=options.max_retries,
        heartbeat_interval=options.heartbeat_interval if shared else None,
        tensorboard=_tensorboard_root(options, spec.name),
        warm_starts=options.warm_starts,
        stack=options.stack,
        identity=identity,
    )


def _queue_at_start(
    driver: Driver,
    spec: StudySpec,
    options: DispatchOptions,
    planned: list[PlannedTrial],
    slots: Sequence[Slot],
    echo: Callable[[str], Any],
) -> None:
    """Bring the study's queue up to date before the loop starts, and say what it holds:
    trials a dead driver left running (SQLite alone: a shared database's are judged by their
    heartbeats), retries a stopped driver never queued, and planned configurations not yet
    queued."""
    from bopsweep.store import redact

    shared = not options.storage.startswith("sqlite")
    recovered = 0 if shared else driver.queue.recover_stale()
    recovered += driver.queue.requeue_lost()
    added = driver.queue.enqueue_missing(planned)
    if driver.search is not None:
        what = f"{driver.queue.counted()} of {driver.search.trials} trials exist"
    else:
        what = f"{len(planned)} configurations, {added} newly queued"
    echo(
        f"study {spec.name} ({spec.kind}) in {redact(options.storage)}: {what}, "
        f"{recovered} resumed after an interruption; "
        + ("queued only" if options.queue_only else f"running on {_names(slots)}")
    )


def _names(slots: Sequence[Slot], shown: int = 8) -> str:
    """The slots' names, the first ``shown`` of them and how many more."""
    names = ", ".join(slot.name for slot in itertools.islice(slots, shown))
    return names + (f" and {len(slots) - shown} more" if len(slots) > shown else "")


def _undone_is_failure(code: int, name: str, queue: TrialQueue) -> int:
    """The run's exit code: a loop that ended well (0) with nothing queued or running left, yet
    work undone, is never a success (1, and a line says why)."""
    if code == 0 and (left := _without_result(queue)):
        print(
            f"bopsweep: study {name}: {left} configuration(s) ended without a result "
            "(failed for good, or could not start; 'bopsweep status' says why)",
            file=sys.stderr,
        )
        return 1
    return code


def _without_result(queue: TrialQueue) -> int:
    """How many of the study's configurations hold no result (complete, pruned or diverged)."""
    configs = {t.user_attrs[CONFIG_ID] for t in queue.trials() if configured(t)}
    return len(configs - queue.finished_configs())


@dataclass
class CheckedRun:
    """What :func:`check_run` found valid: the planned trials, slots, data, and the checkpoint
    root that holds the study's folder."""

    planned: list[PlannedTrial]
    slots: Sequence[Slot]
    data_dir: Path
    root: Path


def check_run(spec: StudySpec, options: DispatchOptions, dry_run: bool = False) -> CheckedRun:
    """Every input of a run checked, in the order a run checks them, before the database is
    touched. Creates nothing; downloads CIFAR-10 if asked and missing, unless ``dry_run``."""

    options.check()
    if options.stack > 1 and spec.base.compile:
        raise UserError("--compile applies to lone trials; drop it or --stack")
    planned = expand(spec, options.max_trials)
    slots = make_slots(
        options.device, options.gpus, options.per_gpu, options.workers, options.oversubscribe
    )
    data_dir = _path(options.data_dir or spec.base.data_dir)
    data = resolve_data_dir(data_dir, options.download, dry_run)
    root = checkpoint_base(options.storage, options.checkpoint_dir)
    # checked before the study is touched, so a bad --checkpoint-dir fails no trial
    check_folder_target(root, "keep trial folders")
    _tensorboard_root(options, spec.name)  # its runs' folder checked too, before any is made
    return CheckedRun(planned, slots, data, root)


def search_of(spec: StudySpec, study: optuna.Study, worker_index: int) -> Search | None:
    """For an Optuna study: what to sample; gives the study its sampler and pruner."""
    if not isinstance(spec.design, SearchDesign):
        return None
    settings = spec.design.settings
    seed = settings.sampler_seed
    if seed is not None:
        # Deterministic from scratch, yet new draws when resumed (a sampler seeded as before
        # would repeat its first suggestions), and different for each worker of a study.
        seed += 1_000_003 * worker_index + len(study.get_trials(deepcopy=False))
        seed %= 2**32  # what numpy's generators, behind Optuna's samplers, accept
    study.sampler = make_sampler(settings.sampler, seed)
    study.pruner = make_pruner(settings.pruner, spec.base.epochs)
    return Search(settings.space, spec.base, settings.trials, spec.seeds)


def _raise_interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def _hang_up(*_: Any) -> None:
    """SIGHUP (the terminal or ssh session is gone) stops the study as SIGTERM does. Output
    meant for that terminal now goes nowhere: writing to it would fail the clean-up."""
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        if os.isatty(fd):
            os.dup2(null, fd)
    os.close(null)
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP held back until the block ends, then raised as
    KeyboardInterrupt.

    For imports: an exception in the middle of torch's import leaves the interpreter unable
    to exit cleanly (it dies by SIGINT), whatever catches the exception.
    """
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        raise KeyboardInterrupt


def _tensorboard_root(options: DispatchOptions, study: str) -> Path | None:
    """Where the study's TensorBoard runs go, if asked for: ``DIR/STUDY``, the name (read
    from the database by resume and worker) made a safe folder name inside ``DIR``, never on
    bopsweep's own state (:func:`bopsweep.readers.tensorboard.study_logdir`)."""
    if options.tensorboard is None:
        return None
    database = database_file(options.storage)
    return study_logdir(options.tensorboard, study, database, options.own_folders())


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def stored_spec(url: str, name: str | None) -> StudySpec:
    """The definition a study was made with, read without writing a byte, for a command that
    runs it (one written by a newer bopsweep is refused)."""
    study = Store.open_readonly(url).load(name, writing=True)
    return spec_from_stored(study.user_attrs[SPEC_ATTR])


def worker_index() -> int:
    """A distinct index per worker process, so the samplers of a study's workers are seeded
    apart and their suggestions do not repeat."""
    tag = f"{socket.gethostname()}-{os.getpid()}".encode()
    return 1 + int(hashlib.sha1(tag).hexdigest(), 16) % 999_983
