"""Fault injection on PostgreSQL: three workers of one study, real processes, and at random
(seeded) moments: workers and trial processes stopped (SIGSTOP) for shorter and longer than
the grace period, database outages longer than it (the server stopped and started), the same
study queued twice at once, and a study made from two commands at once, deleted, then joined.

Invariants: every configuration COMPLETE exactly once with its whole curve; no epoch or
intermediate value accepted for a trial that was not RUNNING (a PostgreSQL trigger records
any); no configuration RUNNING twice at once (a trigger too); every worker exits 0; a deleted
study is never made again; nothing written outside the test's folder; no process left.

The server must be one the test may stop: ``BOPSWEEP_TEST_PG_CTL`` (as in
:mod:`tests.test_postgres`).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bopsweep.store.urls import engine_url
from tests.helpers import (
    PG_CTL,
    TINY,
    bopsweep,
    check_integrity,
    start,
    trial_processes_in,
    wait_until,
    worker,
)

pytestmark = pytest.mark.postgres
SEED = 20261207
FAULTS = 30
# long enough that every fault lands while the study runs (no fault is spent on a finished one)
CONFIGS = ("1e-9", "3e-9", "1e-8", "3e-8", "1e-7", "3e-7", "1e-6", "3e-6", "1e-5", "1e-4", "1e-3")
EPOCHS = 15
BEAT = ["--heartbeat-interval", "1", "--grace-period", "3"]
KINDS = ["worker", "trial", "outage", "queue", "create"]
RACES = {"queue": 2, "create": 2, "outage": 4}  # seconds apiece: the rest are stops

WATCH = """
CREATE TABLE fault_violations (what text, trial_id integer);
CREATE FUNCTION fault_written_while_not_running() RETURNS trigger AS $$
BEGIN
  IF (SELECT state::text FROM trials WHERE trial_id = NEW.trial_id) IS DISTINCT FROM 'RUNNING'
  THEN INSERT INTO fault_violations VALUES (TG_TABLE_NAME || ' row of a trial not running',
                                            NEW.trial_id);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER fault_epochs BEFORE INSERT ON bopsweep_epochs
  FOR EACH ROW EXECUTE FUNCTION fault_written_while_not_running();
CREATE TRIGGER fault_curve BEFORE INSERT OR UPDATE ON trial_intermediate_values
  FOR EACH ROW EXECUTE FUNCTION fault_written_while_not_running();
CREATE FUNCTION fault_running_twice() RETURNS trigger AS $$
BEGIN
  IF NEW.state::text = 'RUNNING' AND EXISTS (
    SELECT 1 FROM trials t
    JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'config_id'
    JOIN trial_user_attributes b ON b.trial_id = NEW.trial_id AND b.key = 'config_id'
    WHERE t.state::text = 'RUNNING' AND t.trial_id <> NEW.trial_id
      AND a.value_json = b.value_json)
  THEN INSERT INTO fault_violations VALUES ('configuration running twice', NEW.trial_id);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER fault_twice AFTER UPDATE OF state ON trials
  FOR EACH ROW EXECUTE FUNCTION fault_running_twice();
"""


def grid(url: str, data: Path, study: str = "s") -> list[str]:
    return [
        "grid", "--param", "gamma", "--values", ",".join(CONFIGS), "--epochs", str(EPOCHS),
        "--storage", url, "--study", study, "--queue-only", "--data-dir", str(data), *TINY,
    ]  # fmt: skip


def sql(url: str, statement: str) -> list:
    import sqlalchemy as sa

    engine = sa.create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement))
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def pg_ctl(action: str) -> None:
    assert PG_CTL is not None
    subprocess.run([PG_CTL, action], check=True, capture_output=True)


@pytest.mark.slow
@pytest.mark.stops_server
def test_three_workers_survive_stops_outages_and_racing_commands(
    pg,
    small_cifar_dir,
    tmp_path,
):
    if PG_CTL is None:
        pytest.skip("BOPSWEEP_TEST_PG_CTL not set: cannot stop the server")
    rng = random.Random(SEED)
    log: list[str] = []
    first = bopsweep(*grid(pg, small_cifar_dir), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    sql(pg, WATCH)
    extra = ["--max-retries", "1000"]
    workers = [worker(pg, tmp_path, *extra, beat=BEAT) for _ in range(3)]
    stopped: dict[int, float] = {}  # pid -> when to SIGCONT it
    guard, over = threading.Lock(), threading.Event()
    errors: list[str] = []

    def context() -> str:
        return "faults: " + "; ".join(log)

    def wake(all_now: bool = False) -> None:
        with guard:
            for pid, due in list(stopped.items()):
                if all_now or time.monotonic() >= due:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                    del stopped[pid]

    def waker() -> None:  # on time, also while the loop waits for racing commands (which may
        while not over.wait(0.1):  # wait for the study's lock a stopped worker holds)
            wake()

    threading.Thread(target=waker, daemon=True).start()

    def stop(pid: int, what: str) -> None:
        seconds = rng.uniform(1, 7)  # the grace period is 3 s: some are taken over, some not
        with guard, contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            stopped[pid] = time.monotonic() + seconds
            log.append(f"SIGSTOP {what} {pid} for {seconds:.1f} s")

    def racing(*commands: list[str]) -> list[subprocess.CompletedProcess]:
        procs = [start(*c, cwd=tmp_path) for c in commands]
        done = []
        for p, c in zip(procs, commands, strict=True):
            out, err = p.communicate(timeout=300)
            done.append(subprocess.CompletedProcess(c, p.returncode, out, err))
            if "Traceback" in err:
                errors.append(err)
        return done

    # the faults start once the study is under way (a worker that cannot reach the database
    # while it starts exits with one line: not what is tested here)
    wait_until(lambda: len(trial_processes_in(tmp_path)) >= 2, 240, "the workers' first trials")
    made, races = 0, dict.fromkeys(RACES, 0)
    during = 0  # faults that found a worker still running
    while len(log) < FAULTS:
        wake()
        time.sleep(rng.uniform(0.2, 1.0))
        running = any(w.poll() is None for w in workers)
        during += running
        live = [w for w in workers if w.poll() is None and w.pid not in stopped]
        trials = [p for p in trial_processes_in(tmp_path) if p not in stopped]
        # stops are cheap and need the study running: most of them; a few commands that race
        kind = rng.choices(KINDS, weights=[3, 4, 1, 1, 1])[0]
        if kind in RACES and races[kind] >= RACES[kind] and running:
            kind = "trial"  # the cheap ones while the study runs; once done, what is left
        if not running and kind in ("worker", "trial"):
            kind = "outage"
        races[kind] = races.get(kind, 0) + 1
        if kind == "worker" and live:
            stop(rng.choice(live).pid, "worker")
        elif kind == "trial" and trials:
            stop(rng.choice(trials), "trial")
        elif kind == "outage":
            seconds = rng.uniform(3.5, 6)
            pg_ctl("stop")
            time.sleep(seconds)
            pg_ctl("start")
            log.append(f"outage of {seconds:.1f} s")
        elif kind == "queue":  # the same study queued twice at once: nothing new
            results = racing(grid(pg, small_cifar_dir), grid(pg, small_cifar_dir))
            assert [r.returncode for r in results] == [0, 0], context() + str(results)
            log.append("queued twice at once")
        elif kind == "create":  # a new study made twice at once, deleted, then joined
            name = f"x{made}"
            made += 1
            results = racing(grid(pg, small_cifar_dir, name), grid(pg, small_cifar_dir, name))
            assert [r.returncode for r in results] == [0, 0], context() + str(results)
            gone = bopsweep("delete", "--storage", pg, "--study", name, "--yes", cwd=tmp_path)
            assert gone.returncode == 0, context() + gone.stderr
            joined = bopsweep("worker", "--storage", pg, "--study", name, *BEAT, cwd=tmp_path)
            assert joined.returncode == 2, context() + joined.stderr
            assert len(joined.stderr.strip().splitlines()) == 1, joined.stderr
            log.append(f"made {name} twice at once, deleted it, joined it")
    over.set()
    wake(all_now=True)

    logs = [w.communicate(timeout=400) for w in workers]
    for _, err in logs:
        assert "Traceback" not in err, context() + err
    # each worker's last lines first: CI shows the start of a long message
    ends = "\n".join(f"worker {i}: ...{err[-1200:]}" for i, (_, err) in enumerate(logs))
    assert [w.returncode for w in workers] == [0, 0, 0], ends + "\n" + context()
    assert errors == [], context()
    print(f"faults survived: {len(log)}, {during} while the study ran: {context()}")

    # --- the study is whole, and nothing was written that should not have been ------------------
    check_integrity(pg, len(CONFIGS), EPOCHS)
    assert sql(pg, "SELECT what, trial_id FROM fault_violations") == [], context()
    names = [n for (n,) in sql(pg, "SELECT study_name FROM studies")]
    assert names == ["s"], context()  # every deleted study stayed deleted
    assert not trial_processes_in(tmp_path), "a trial process outlived its worker"
    assert {p.name for p in tmp_path.iterdir()} <= {"ckpt"}, list(tmp_path.iterdir())
