"""What the tests share besides fixtures (those are in conftest.py): the tiny trial
configuration, ``bopsweep`` run in-process or as a child process, assertions, process
look-ups, studies written directly to a database, and the PostgreSQL test server's workers.

Test modules import from here, never from one another."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np
    from click.testing import Result

    from bopsweep.store import Store
    from bopsweep.studies import TrialConfig

# --- the tiny trial: a network 1/16 wide on the CPU, so a test trains in seconds -------------
TINY_SETTINGS: dict[str, Any] = {"width": 0.0625, "batch_size": 20, "device": "cpu"}
# the same as command-line options, quiet
TINY = [
    *(a for k, v in TINY_SETTINGS.items() for a in (f"--{k.replace('_', '-')}", str(v))),
    "--quiet",
]


def invoke(args: list[str], **kwargs: Any) -> Result:
    """``bopsweep ARGS`` in this process (Click's runner; ``input=`` etc. pass through)."""
    from typer.testing import CliRunner

    from bopsweep.cli import app

    return CliRunner().invoke(app, args, **kwargs)


def bopsweep(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``bopsweep ARGS`` as a child process in ``cwd``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "bopsweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """``bopsweep ARGS`` started in ``cwd`` and left running (its output piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bopsweep", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def grid_args(param: str, values: str, epochs: int, data: Path, workers: int = 2) -> list[str]:
    """A grid study of tiny trials on the CPU."""
    return [
        "grid",
        "--param",
        param,
        "--values",
        values,
        "--workers",
        str(workers),
        "--epochs",
        str(epochs),
        "--data-dir",
        str(data),
        *TINY,
    ]


def wait_until(condition, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def trials(cwd: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of ``study`` in ``cwd/study.db``."""
    return optuna.load_study(study_name=study, storage=f"sqlite:///{cwd / 'study.db'}").trials


def assert_one_complete_per_configuration(ts, n_configs: int, epochs: int, cwd: Path) -> None:
    """Each configuration COMPLETE once in ``cwd/study.db``, nothing RUNNING, and every complete
    trial with its whole curve, each epoch's metric row once."""
    from bopsweep.store.optuna_adapter import trial_id

    complete = [t for t in ts if t.state == optuna.trial.TrialState.COMPLETE]
    per_config = Counter(t.user_attrs["config_id"] for t in complete)
    assert len(per_config) == n_configs and set(per_config.values()) == {1}, per_config
    assert not [t for t in ts if t.state == optuna.trial.TrialState.RUNNING]
    with sqlite3.connect(cwd / "study.db") as conn:
        rows = conn.execute("SELECT trial_id, epoch FROM bopsweep_epochs").fetchall()
    assert len(rows) == len(set(rows))  # no duplicate metric rows
    stored = Counter(tid for tid, _ in rows)
    for t in complete:
        assert stored[trial_id(t)] == epochs, "a complete trial carries its whole curve"
        assert sorted(t.intermediate_values) == list(range(1, epochs + 1))


def epochs_in(run_dir: Path) -> int:
    """Epochs in a run's metrics.csv. A row is written just before its epoch's checkpoint, so
    n rows mean a checkpoint of at least n - 1 epochs."""
    metrics = run_dir / "metrics.csv"
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.exists() else 0


def run_dirs(cwd: Path, study: str) -> list[Path]:
    """The trial folders of ``study`` in ``cwd/study.ckpt`` (by the marker of its folder)."""
    from bopsweep.folders import read_marker

    root = cwd / "study.ckpt"
    for folder in root.iterdir() if root.exists() else []:
        if (read_marker(folder) or {}).get("study") == study:
            return sorted(d for d in folder.iterdir() if d.is_dir())
    return []


def one_line_error(result: Any, fragment: str) -> None:
    """Bad input: exit code 2, one line starting ``bopsweep: error:`` that holds ``fragment``,
    and no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("bopsweep: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def command_lines() -> dict[int, list[str]]:
    """pid → arguments of every live process (zombies have none and are left out)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv != [b""]:
            found[int(entry.name)] = [a.decode(errors="replace") for a in argv]
    return found


def zygotes(driver_pid: int) -> list[int]:
    """Pids of the live warm-start zygotes of a driver: its pid is their second argument, and
    each leads a session of its own (unlike the processes it forks, while they still carry
    its command line)."""
    module = "bopsweep.driver.zygote"
    found = []
    for pid, argv in command_lines().items():
        if module in argv and argv[argv.index(module) + 2 :][:1] == [str(driver_pid)]:
            with contextlib.suppress(ProcessLookupError):
                if os.getsid(pid) == pid:
                    found.append(pid)
    return found


def trial_processes(driver_pid: int | None = None) -> dict[int, str]:
    """pid → command line of live bopsweep trial processes (optionally: of one driver)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if "bopsweep.driver.child" in cmd and (driver_pid is None or ppid == driver_pid):
            found[int(entry.name)] = cmd
    return found


def trial_processes_in(folder: Path) -> list[int]:
    """Pids of trial processes working in ``folder`` (their run folders lie below it)."""
    return [
        pid
        for pid, argv in command_lines().items()
        if "bopsweep.driver.child" in argv and any(str(folder) in a for a in argv)
    ]


def warm_started(pid: int) -> bool:
    """Whether a process was forked by a zygote (it has the zygote's environment)."""
    environ = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    return b"BOPSWEEP_WARM_START=1" in environ


def leave_hot_journal(db: Path) -> None:
    """Leave the SQLite file ``db`` as a process killed while it commits leaves it: a
    transaction that renames every study and fills a new table has spilled pages into the file
    (its journal synced first, so the journal is "hot"), then SIGKILL before it ends."""
    code = f"""
import os, signal, sqlite3
c = sqlite3.connect({str(db)!r}, isolation_level=None)
c.execute("PRAGMA cache_size=2")  # pages spill to the file long before the commit
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE studies SET study_name = study_name || '-torn'")
c.execute("CREATE TABLE torn(a)")
c.executemany("INSERT INTO torn VALUES (?)", [("x" * 500,)] * 2000)
os.kill(os.getpid(), signal.SIGKILL)
"""
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    journal = Path(f"{db}-journal").read_bytes()
    assert journal[:1] not in (b"", b"\0"), "the journal is not hot"


def study_folder(database: Path | str, study: str, root: Path | None = None) -> Path:
    """The folder of ``study``'s trial folders, ``ROOT/SLUG-UUID`` (ROOT: ``DB.ckpt`` beside
    a SQLite file, or ``root``), from the identity the database holds."""
    from bopsweep import folders
    from bopsweep.store import Store, checkpoint_base, storage_url, study_uuid

    url = str(database) if "://" in str(database) else storage_url(None, Path(database))
    identity = study_uuid(Store.open_readonly(url).load(study))
    assert identity is not None, f"study {study} has no identity"
    return folders.study_folder(checkpoint_base(url, root), study, identity)


def at_once(work, inputs: list) -> tuple[list, list]:
    """``work(x)`` for every input, each in its own thread, released together: (results,
    exceptions)."""
    import threading

    barrier, results, errors = threading.Barrier(len(inputs)), [], []

    def run(x) -> None:
        barrier.wait()
        try:
            results.append(work(x))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(x,)) for x in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


# --- studies written directly to a database (no training, no driver) -------------------------
def make_study(path: Path, name: str = "grid-gamma", epochs: int = 3, acc: float = 0.5) -> int:
    """A finished one-trial bopsweep study with ``epochs`` metric rows in the SQLite file
    ``path``; the trial's id."""
    from bopsweep.store import Store
    from bopsweep.store.optuna_adapter import study_id, trial_id
    from bopsweep.studies import TrialConfig, grid_study

    store = Store(f"sqlite:///{path}", create=True)
    study, _ = store.create(grid_study(name, TrialConfig(), {"gamma": [1e-7]}))
    trial = study.ask()
    trial.set_user_attr("config_id", "c0")
    rows = [{"epoch": e, "val_acc": acc + e / 100, "pi": -3.0} for e in range(1, epochs + 1)]
    store.metrics.write(study_id(study), trial_id(trial), rows, {})
    study.tell(trial, rows[-1]["val_acc"])
    store.engine.dispose()
    return trial_id(trial)


EPOCHS, STEPS_PER_EPOCH, LOG_EVERY = 3, 10, 5  # of a fake trial
HYPER_COLUMNS = ("gamma", "sigma", "tau", "lr")  # the scheduled values train writes per epoch


def flip_row(rng: np.random.Generator) -> dict[str, float]:
    """π and flip fraction, network-wide and per layer, as :class:`bopsweep.trial.flips.FlipLog`."""
    from bopsweep.readers.plots import LAYERS

    pis = {"pi": rng.uniform(-9, 0), **{f"pi_{n}": rng.uniform(-9, 0) for n in LAYERS}}
    return {**pis, **{k.replace("pi", "flip_frac", 1): math.exp(v) for k, v in pis.items()}}


def fake_curve(
    config: TrialConfig, rng: np.random.Generator, epochs: int = EPOCHS
) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """Per-epoch rows and per-epoch logged-step rows with the keys ``bopsweep.trial.train`` writes;
    scheduled values as in force at each epoch's last step."""
    rows, steps = [], {}
    for epoch in range(1, epochs + 1):
        last = epoch * STEPS_PER_EPOCH
        hyper = {name: getattr(config, name) for name in HYPER_COLUMNS}
        for name, schedule in config.schedules.items():
            hyper[name] = schedule.value(
                config.initial(name), last - 1, STEPS_PER_EPOCH, config.epochs
            )
        val_acc, train_acc = rng.uniform(0.1, 0.9, size=2)
        rows.append(
            {
                "epoch": epoch,
                "step": last,
                "train_loss": rng.uniform(0.5, 2.5),
                "train_acc": train_acc,
                "val_loss": rng.uniform(0.5, 2.5),
                "val_acc": val_acc,
                **hyper,
                **flip_row(rng),
            }
        )
        steps[epoch] = [
            {"epoch": epoch, "step": s, "steps": LOG_EVERY, **flip_row(rng)}
            for s in range(last - STEPS_PER_EPOCH + LOG_EVERY, last + 1, LOG_EVERY)
        ]
    return rows, steps


def add_trial(
    store: Store,
    study: optuna.Study,
    config: TrialConfig,
    label: str,
    params: dict[str, Any],
    distributions: dict[str, Any],
    rng: np.random.Generator,
    epochs: int = EPOCHS,
    state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE,
    attempt: int = 0,
) -> dict[str, Any]:
    """A trial as the driver leaves it (its configuration as its difference from the study's
    base, results, metric rows)."""
    from bopsweep.store.optuna_adapter import study_id, trial_id
    from bopsweep.store.trial_config import config_attrs, study_base
    from bopsweep.studies import config_id

    rows, steps = fake_curve(config, rng, epochs)
    best = max(rows, key=lambda r: r["val_acc"])
    complete = state == optuna.trial.TrialState.COMPLETE
    attrs = {
        "config_id": config_id(config),
        "label": label,
        **config_attrs(config.to_dict(), study_base(study.user_attrs)),
        "attempt": attempt,
        "epochs_done": epochs,
    }
    if complete:
        attrs.update(best_val_acc=best["val_acc"], best_epoch=best["epoch"], seconds=1.0)
        attrs["final_train_acc"] = rows[-1]["train_acc"]
    else:
        attrs.update(failure="crash", fail_reason="killed by signal 9")
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=rows[-1]["val_acc"] if complete else None,
            params=params,
            distributions=distributions,
            user_attrs=attrs,
        )
    )
    trial = study.get_trials(deepcopy=False)[-1]
    store.metrics.write(study_id(study), trial_id(trial), rows, steps)
    return {"number": trial.number, "label": label, "params": params, "rows": rows, "steps": steps}


# --- the PostgreSQL test server (.ci/postgres.sh; the ``pg`` fixture makes its databases) -----
PG_URL = os.environ.get("BOPSWEEP_TEST_POSTGRES")
PG_CTL = os.environ.get("BOPSWEEP_TEST_PG_CTL")  # stops and starts that server
PASSWORD = "s3cret-pw"  # the test role's, in PG_URL


@contextlib.contextmanager
def postgres_server_turn(exclusive: bool) -> Iterator[None]:
    """A turn on the PostgreSQL test server, shared or alone, among every test process on this
    machine: a lock (``flock``) on a file named after the server's port."""
    assert PG_URL is not None
    port = sqlalchemy.engine.make_url(PG_URL).port
    path = Path(tempfile.gettempdir()) / f"bopsweep-test-postgres-{port}.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


BEAT = ["--heartbeat-interval", "1", "--grace-period", "4"]  # a dead worker is noticed fast


def queue(url: str, data: Path, cwd: Path, values: dict[str, str], epochs: int) -> None:
    """Queue (not run) the tiny grid ``values`` as study ``s`` in ``url``."""
    args = ["grid"]
    for param, vals in values.items():
        args += ["--param", param, "--values", vals]
    result = bopsweep(
        *args,
        "--storage",
        url,
        "--study",
        "s",
        "--queue-only",
        "--epochs",
        str(epochs),
        "--data-dir",
        str(data),
        *TINY,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr


def worker(url: str, cwd: Path, *extra: str, beat: list[str] = BEAT) -> subprocess.Popen:
    """A ``bopsweep worker`` on study ``s`` of ``url``, started and left running."""
    return start(
        "worker",
        "--storage",
        url,
        "--study",
        "s",
        *beat,
        "--checkpoint-dir",
        str(cwd / "ckpt"),
        "--quiet",
        *extra,
        cwd=cwd,
    )


def check_integrity(url: str, n_configs: int, epochs: int) -> list[optuna.trial.FrozenTrial]:
    """Every configuration COMPLETE exactly once with its whole curve; nothing RUNNING; metric
    rows only of existing trials, one per (trial, epoch)."""
    import sqlalchemy as sa

    from bopsweep.store.optuna_adapter import trial_id
    from bopsweep.store.urls import engine_url

    trials = optuna.load_study(study_name="s", storage=engine_url(url)).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    per_config = Counter(t.user_attrs["config_id"] for t in complete)
    assert len(per_config) == n_configs and set(per_config.values()) == {1}, per_config
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    engine = sa.create_engine(engine_url(url))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT trial_id, epoch FROM bopsweep_epochs")).all()
        ids = {r[0] for r in conn.execute(sa.text("SELECT trial_id FROM trials")).all()}
    engine.dispose()
    assert {t for t, _ in rows} <= ids
    assert len(rows) == len(set(rows))
    stored = Counter(t for t, _ in rows)
    assert all(stored[trial_id(t)] == epochs for t in complete)
    assert_attributes_on_record(url)
    return trials


def assert_attributes_on_record(url: str) -> None:
    """Every attribute bopsweep wrote on the studies and trials of database ``url`` is declared
    in the store's record (:mod:`bopsweep.attr_keys`) and holds what the record says it holds."""
    from bopsweep.attr_keys import STUDY_RECORD, SYSTEM_RECORD, TRIAL_RECORD, off_record
    from bopsweep.store.urls import engine_url

    storage = engine_url(url)
    lines = []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        lines += [f"study {name}: {e}" for e in off_record(study.user_attrs, STUDY_RECORD)]
        for t in study.trials:
            lines += [f"trial {t.number}: {e}" for e in off_record(t.user_attrs, TRIAL_RECORD)]
            theirs = off_record(t.system_attrs, SYSTEM_RECORD, every_key=False)  # Optuna's too
            lines += [f"trial {t.number} (system): {e}" for e in theirs]
    assert not lines, "\n".join(lines)


def as_of_0_1(db: Path | str) -> None:
    """Make the studies of database ``db`` (a SQLite file, or a URL) as bopsweep 0.1 left them:
    no schema version and no C2I mark (their C2I values are the caller's to write as 0.1 did)."""
    import sqlalchemy as sa

    from bopsweep.attr_keys import C2I_ATTR, SCHEMA_ATTR
    from bopsweep.store.urls import engine_url

    engine = sa.create_engine(engine_url(db if isinstance(db, str) else f"sqlite:///{db}"))
    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM study_user_attributes WHERE key IN (:a, :b)"),
            {"a": C2I_ATTR, "b": SCHEMA_ATTR},
        )
    engine.dispose()


# --- a study as bopsweep 0.1 wrote it (C2I stored as the share of signs changed) ------------
KEPT = {1: 0.875, 2: 0.75}  # the paper's C2I of epochs 1 and 2
LAYER = {1: 0.5, 2: 0.25}


def old_study(path: Path | str) -> None:
    """A study as bopsweep 0.1 left it: C2I stored as the share changed, no C2I attribute
    (``path``: a SQLite file, or a database's URL)."""
    import optuna
    from optuna.distributions import FloatDistribution

    from bopsweep.store import Store
    from bopsweep.store.optuna_adapter import study_id, trial_id
    from bopsweep.studies import TrialConfig, grid_study

    store = Store(path if isinstance(path, str) else f"sqlite:///{path}", create=True)
    study, _ = store.create(grid_study("g", TrialConfig(), {"gamma": [1e-7, 1e-6]}))
    dist = {"gamma": FloatDistribution(1e-7, 1e-7)}
    study.add_trial(
        optuna.trial.create_trial(
            params={"gamma": 1e-7}, distributions=dist, value=0.5,
            user_attrs={"config_id": "c0", "label": "gamma=1e-07", "epochs_done": 2},
        )
    )  # fmt: skip
    first = study.get_trials(deepcopy=False)[0]
    rows = [
        {"epoch": e, "val_acc": 0.5, "c2i": 1 - KEPT[e], "c2i_fc3": 1 - LAYER[e], "pi": -9.0}
        for e in (1, 2)
    ]
    store.metrics.write(study_id(study), trial_id(first), rows, {})
    store.engine.dispose()
    as_of_0_1(path)


def digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
