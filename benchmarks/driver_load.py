"""The driver's own work per trial as its study grows: CPU seconds of the driver process for each
trial it finishes, in studies of 1,000, 10,000 and 50,000 trials, and the study's progress as
the driver reads it.

Each study is a γ grid of N tiny trials (1 epoch, width 1/16, 200 images), half of them
completed in bulk (SQL written as Optuna writes a COMPLETE trial: state, value, intermediate
value, one metric row; no training), half queued. ``bopsweep resume`` then runs ``run`` (12)
of the queued ones for real, with its display on (each trial's end shows the study's
progress), and is stopped (Ctrl-C). The driver's CPU (user + system, its own: not its trial
processes') is read from ``/proc/PID/stat`` at its first and last trial ends: the difference
per trial in between is its work per trial, without start-up (which reads the whole study
once) and shutdown.

``progress``: one read of the study's progress as the driver keeps it while trials end
(:class:`~bopsweep.driver.progress.ProgressBook`), against the full count of every trial
(:func:`~bopsweep.driver.state.study_progress`) it replaced on that path.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.dispatch import trials_per_minute
from bopsweep.driver.progress import ProgressBook
from bopsweep.driver.queue import TrialQueue
from bopsweep.driver.state import study_progress
from bopsweep.store import Store
from bopsweep.store.optuna_adapter import study_id, trial_id
from bopsweep.studies import TrialConfig, expand, grid_study
from bopsweep.trial.cifar_files import make_synthetic

RUN = 12  # trials trained for real at each size (at least 3)
WORKER_TRIALS, WORKER_ROUNDS = 24, 3  # the 2-worker / 1-worker ratio
TINY = {"width": 0.0625, "batch_size": 20, "epochs": 1, "device": "cpu"}


def build(folder: Path, data: Path, n: int) -> str:
    """A SQLite study of ``n`` trials, the first half complete, the rest queued; its URL."""
    import sqlalchemy as sa

    url = f"sqlite:///{folder / f'load{n}.db'}"
    store = Store(url, create=True)
    gammas = [float(f"{1e-9 * (1 + k / n):.12g}") for k in range(n)]
    spec = grid_study("load", TrialConfig(**TINY, data_dir=str(data)), {"gamma": gammas})
    study, _ = store.create(spec)
    TrialQueue(study).enqueue_missing(expand(spec, max_trials=n))
    store.metrics.ensure_tables()
    sid, now = study_id(study), datetime.datetime.now()
    row = json.dumps({"epoch": 1, "val_acc": 0.1, "train_acc": 0.1, "pi": -9.0})
    with store.engine.begin() as conn:
        done = [
            tid
            for (tid,) in conn.execute(
                sa.text("SELECT trial_id FROM trials WHERE study_id = :s ORDER BY number"),
                {"s": sid},
            )
        ][: n // 2]
        conn.execute(
            sa.text(
                "UPDATE trials SET state = 'COMPLETE', datetime_start = :t, "
                "datetime_complete = :t WHERE trial_id = :id"
            ),
            [{"t": now, "id": tid} for tid in done],
        )
        conn.execute(
            sa.text(
                "INSERT INTO trial_values (trial_id, objective, value, value_type) "
                "VALUES (:id, 0, 0.1, 'FINITE')"
            ),
            [{"id": tid} for tid in done],
        )
        conn.execute(
            sa.text(
                "INSERT INTO trial_intermediate_values "
                "(trial_id, step, intermediate_value, intermediate_value_type) "
                "VALUES (:id, 1, 0.1, 'FINITE')"
            ),
            [{"id": tid} for tid in done],
        )
        conn.execute(
            sa.text(
                "INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                "VALUES (:id, 'epochs_done', '1')"
            ),
            [{"id": tid} for tid in done],
        )
        conn.execute(
            store.metrics.epochs.insert(),
            [
                {"study_id": sid, "trial_id": tid, "trial_start": now, "epoch": 1, "data": row}
                for tid in done
            ],
        )
    store.engine.dispose()
    return url


def driver_cpu(pid: int) -> float:
    """The CPU seconds (user + system) of process ``pid`` itself, not of its children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seconds_per_trial(url: str, cwd: Path, run: int = RUN) -> float:
    """The driver's CPU seconds per trial between its first and its last trial's end."""
    command = ["resume", "--storage", url, "--workers", "1", "--max-trials", str(10**6)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bopsweep", *command],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    ends: list[float] = []
    for line in proc.stderr:  # a trial's end is the line that shows the study's progress
        if "COMPLETE val_acc" in line:
            ends.append(driver_cpu(proc.pid))
            if len(ends) == run:
                proc.send_signal(signal.SIGINT)
    assert proc.wait() == 130 and len(ends) == run, f"{len(ends)} trials of {run} ended"
    return (ends[-1] - ends[0]) / (run - 1)


def progress_reads(url: str) -> dict[str, float]:
    """Seconds of the driver's progress read after one trial ended (the study's rows and
    trials read once before: what a driver does at each trial's end), and of the full count
    of every trial it replaced."""
    import optuna

    store = Store(url)
    study = optuna.load_study(study_name="load", storage=store.storage)
    queue = TrialQueue(study)
    book = ProgressBook(queue, store.metrics.epochs)
    book.poll()  # the first read: the whole study, once per driver
    queue.requeue(queue.trials()[-1], 0)  # one more run of a configuration: queued, then
    trial = queue.claim()  # it ends: its row, its end
    assert trial is not None
    row = {"epoch": 1, "val_acc": 0.1}
    store.metrics.write(study_id(study), trial_id(trial), [row], {}, curve={1: 0.1})
    queue.tell(trial, "COMPLETE", 0.1)
    start = time.perf_counter()
    book.poll()
    kept = time.perf_counter() - start
    start = time.perf_counter()
    full_count = study_progress(queue.trials(), queue.base)
    full = time.perf_counter() - start
    assert book.progress() == full_count
    store.engine.dispose()
    return {"progress_kept": kept, "progress_full_count": full}


def steady_rate(url: str, name: str, workers: int) -> float:
    """Trials per minute of a finished study from the end of its first round of trials (one
    per worker) to its last trial's end: the pace while trials run, without the start (the
    warm-start zygote's torch import and data loading, once per driver however many workers)
    and the end."""
    import optuna

    study = optuna.load_study(study_name=name, storage=url)
    ends = sorted(t.datetime_complete for t in study.trials if t.datetime_complete is not None)
    if len(ends) <= workers:
        raise ValueError(f"a steady pace needs more trials than workers, not {len(ends)}")
    span = (ends[-1] - ends[workers - 1]).total_seconds()
    return (len(ends) - workers) / max(span, 1e-6) * 60


def workers_ratio(folder: Path, data: Path, n_trials: int, rounds: int) -> dict[str, float]:
    """Trials per minute of one driver with 2 CPU workers and with 1, on tiny warm trials
    (1 epoch), while they run (:func:`steady_rate`): each the median of ``rounds``, taken in
    turn."""
    import statistics

    rates: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for w in (1, 2) if r % 2 == 0 else (2, 1):
            name = f"workers{w}-{r}"
            trials_per_minute(name, data, folder, n_trials, 1, workers=w)
            rates[w].append(steady_rate(f"sqlite:///{folder / f'{name}.db'}", name, w))
    one, two = (statistics.median(rates[w]) for w in (1, 2))
    return {"one_worker": one, "two_workers": two, "ratio": two / one}


def run(
    sizes: tuple[int, ...] = (1000, 10000, 50000),
    run: int = RUN,
    worker_trials: int = WORKER_TRIALS,
    rounds: int = WORKER_ROUNDS,
) -> dict:
    import tempfile

    results: dict = {"sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        data = make_synthetic(cwd / "data", n_train=200, n_test=50).parent
        for n in sizes:
            start = time.perf_counter()
            url = build(cwd, data, n)
            built = time.perf_counter() - start
            per_trial = seconds_per_trial(url, cwd, run)
            results["sizes"][n] = {"driver_cpu_per_trial": per_trial, **progress_reads(url)}
            print(f"  ({n} trials: study built in {built:.0f} s)", flush=True)
        results["workers"] = workers_ratio(cwd, data, worker_trials, rounds)
    by_size, small, large = results["sizes"], sizes[0], sizes[-1]
    print(f"\ndriver load: studies of {', '.join(f'{n:,}' for n in sizes)} trials, {run} run")
    head = "".join(f"{n:>12,}" for n in sizes)
    print(f"  {'':<28}{head}   growth {small:,} → {large:,}")
    for key, label in (
        ("driver_cpu_per_trial", "driver CPU s per trial"),
        ("progress_kept", "progress read (kept) s"),
        ("progress_full_count", "progress (full count) s"),
    ):
        cells = "".join(f"{by_size[n][key]:12.4f}" for n in sizes)
        print(f"  {label:<28}{cells}   {by_size[large][key] / by_size[small][key]:6.2f}×")
    w = results["workers"]
    print(
        f"  {worker_trials} tiny warm trials (1 epoch): 1 worker {w['one_worker']:.1f}/min, "
        f"2 workers {w['two_workers']:.1f}/min, ratio {w['ratio']:.2f}"
    )
    return results


if __name__ == "__main__":
    run()
