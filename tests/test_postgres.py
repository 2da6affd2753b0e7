"""Several workers on one study in a real PostgreSQL server: races, a killed worker, a server
restart, and the password kept out of everything.

The server comes from ``.ci/postgres.sh`` (CI runs it); these tests find it through
``BOPSWEEP_TEST_POSTGRES`` (the ``pg`` fixture of conftest.py) and stop/start it through
``BOPSWEEP_TEST_PG_CTL``. Without them they skip on a developer machine, and fail in CI.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest

from bopsweep.store.urls import engine_url
from tests.helpers import (
    PASSWORD,
    PG_CTL,
    at_once,
    bopsweep,
    check_integrity,
    invoke,
    one_line_error,
    queue,
    wait_until,
    worker,
)

pytestmark = pytest.mark.postgres
PROGRESS = re.compile(r"study: (\d+)/(\d+) trials · (\d+)/(\d+) epochs")


@pytest.mark.slow
def test_two_workers_complete_a_12_trial_grid_exactly_once(pg, small_cifar_dir, tmp_path):
    queue(
        pg,
        small_cifar_dir,
        tmp_path,
        {"gamma": "1e-8,1e-7,1e-6", "tau": "1e-7,1e-6,1e-5,1e-4"},
        epochs=2,
    )
    # the default heartbeat: no worker dies here (the tests' 4 s grace period is for those that
    # kill one; a worker paused 4 s by a loaded machine gets its live trial re-queued: 13 trials)
    workers = [worker(pg, tmp_path, beat=[]), worker(pg, tmp_path, beat=[])]
    logs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    trials = check_integrity(pg, 12, 2)
    assert len(trials) == 12  # no duplicate, none lost
    assert all("started" in err for _, err in logs)  # both worked on the study
    # each trial's end shows the whole study's progress (ProgressBook), both workers' trials:
    # totals exact on every line, never fewer done than this worker's own ends, and the worker
    # whose end was recorded last saw every other end, all 12 trials and 24 epochs
    shown = [[tuple(map(int, m)) for m in PROGRESS.findall(err)] for _, err in logs]
    assert all(len(lines) == err.count(": COMPLETE") for lines, (_, err) in zip(shown, logs))
    for lines in shown:
        assert all((total, epochs_total) == (12, 24) for _, total, _, epochs_total in lines)
        assert all(done >= own for own, (done, *_) in enumerate(lines, start=1))
    assert (12, 12, 24, 24) in [lines[-1] for lines in shown if lines]


def epochs_done(ckpt: Path) -> dict[Path, int]:
    """Epochs in each run's metrics.csv (a checkpoint of at least one fewer is on disk)."""
    out = {}
    for d in ckpt.glob("s-*/*"):  # the study's folder: SLUG-UUID
        m = d / "metrics.csv"
        out[d] = max(0, len(m.read_text().splitlines()) - 1) if m.exists() else 0
    return out


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_finished_by_the_other(pg, small_cifar_dir, tmp_path):
    epochs = 20
    queue(pg, small_cifar_dir, tmp_path, {"gamma": "1e-7,1e-6,1e-5"}, epochs=epochs)
    victim = worker(pg, tmp_path)
    wait_until(
        lambda: any(3 <= n < epochs - 8 for n in epochs_done(tmp_path / "ckpt").values()),
        what="the first worker mid-trial",
    )
    survivor = worker(pg, tmp_path)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err
    trials = check_integrity(pg, 3, epochs)
    stale = [t for t in trials if t.state.name == "FAIL"]
    assert len(stale) == 1  # failed by the survivor after the grace period
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == stale[0].number)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["resumed_from_epoch"] >= 2
    assert f"continues trial {stale[0].number} of a stopped worker from its checkpoint" in err


@pytest.mark.slow
@pytest.mark.stops_server
def test_workers_ride_out_a_database_restart(pg, small_cifar_dir, tmp_path):
    if PG_CTL is None:
        pytest.skip("BOPSWEEP_TEST_PG_CTL not set: cannot restart the server")
    epochs = 15
    queue(pg, small_cifar_dir, tmp_path, {"gamma": "1e-7,1e-6,1e-5,1e-4"}, epochs=epochs)
    # a grace period longer than the outage: no live trial is judged stale meanwhile
    beat = ["--heartbeat-interval", "1", "--grace-period", "30"]
    workers = [worker(pg, tmp_path, beat=beat), worker(pg, tmp_path, beat=beat)]
    wait_until(
        lambda: sum(n >= 3 for n in epochs_done(tmp_path / "ckpt").values()) >= 2,
        what="both workers mid-trial",
    )
    subprocess.run([PG_CTL, "stop"], check=True)
    time.sleep(6)
    subprocess.run([PG_CTL, "start"], check=True)
    logs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    joined = "".join(err for _, err in logs)
    assert "the database is unreachable" in joined and "reachable again" in joined
    check_integrity(pg, 4, epochs)


@pytest.mark.stops_server
def test_ride_out_reads_once_a_restarted_server_answers(pg):
    """``Outage.ride_out``, through which a worker whose trials are done checks and sums up the
    study: a server stopped meanwhile delays the read (noted, as the loop notes it) until it
    answers again, instead of raising and ending a finished study in failure."""
    if PG_CTL is None:
        pytest.skip("BOPSWEEP_TEST_PG_CTL not set: cannot restart the server")
    from bopsweep.driver.outage import Outage

    optuna.create_study(study_name="s", storage=engine_url(pg))
    notes: list[str] = []
    outage = Outage(pg, notes.append)
    subprocess.run([PG_CTL, "stop"], check=True)
    back = threading.Timer(5, lambda: subprocess.run([PG_CTL, "start"], check=True))
    back.start()
    try:
        names = outage.ride_out(lambda: optuna.get_all_study_names(engine_url(pg)))
    finally:
        back.join()
    assert names == ["s"]
    assert notes[0].startswith("the database is unreachable")
    assert notes[-1] == "the database is reachable again"


@pytest.mark.slow
def test_the_password_appears_nowhere(pg, small_cifar_dir, tmp_path):
    assert PASSWORD in pg
    queue(pg, small_cifar_dir, tmp_path, {"gamma": "1e-7,1e-6"}, epochs=1)
    w = worker(pg, tmp_path)
    out, err = w.communicate(timeout=300)
    assert w.returncode == 0
    texts = [out, err]
    for args in (["status"], ["studies"], ["export", "-o", "t.csv"], ["plot", "--out", "figs"]):
        r = bopsweep(*args, "--storage", pg, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        texts += [r.stdout, r.stderr]
    bad = bopsweep("status", "--storage", pg.replace("/bopsweep_", "/absent_"), cwd=tmp_path)
    assert bad.returncode == 2
    texts += [bad.stdout, bad.stderr]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".csv", ".json", ".md", ".txt", ""):
            texts.append(path.read_text(errors="replace"))
    study = optuna.load_study(study_name="s", storage=engine_url(pg))
    texts.append(repr(study.user_attrs))
    texts += [repr(t.user_attrs) + repr(t.system_attrs) for t in study.trials]
    assert not [t for t in texts if PASSWORD in t]


@pytest.mark.parametrize("attempt", range(3))
def test_drivers_that_make_the_metric_tables_at_once_all_succeed(pg, attempt):
    """Two workers' first epochs arrive together: each finds the metric tables missing and
    makes them; PostgreSQL refuses all but one CREATE TABLE, and the others carry on."""
    from bopsweep.store import Store

    # Optuna's tables, no metric tables yet (engine_url: psycopg 3 on SQLAlchemy 2.0 too)
    optuna.create_study(study_name="s", storage=engine_url(pg))
    stores = [Store(pg) for _ in range(6)]
    assert all(s.metrics._absent for s in stores)
    _, errors = at_once(lambda store: store.metrics.ensure_tables(), stores)
    assert errors == []
    assert not any(s.metrics._absent for s in stores)


def test_delete_refuses_a_study_whose_trial_a_worker_may_run(pg):
    """On a shared database a running trial may be another machine's worker's: not deleted."""
    from bopsweep.store import Store
    from bopsweep.studies import TrialConfig, grid_study

    study, _ = Store(pg, create=True).create(grid_study("s", TrialConfig(), {"gamma": [1e-7]}))
    study.ask()
    result = invoke(["delete", "--storage", pg, "--study", "s", "--yes"])
    one_line_error(result, "1 running trial")
    assert optuna.get_all_study_names(engine_url(pg)) == ["s"]
