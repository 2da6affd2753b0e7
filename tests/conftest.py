"""Shared fixtures: small CIFAR-format data sets written to disk and loaded by the real loader,
databases (a SQLite file, a PostgreSQL database, either one as ``storage``), and a small study
written directly. Plain helpers are in :mod:`tests.helpers`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

# OpenMP threads that wait sleep instead of spinning. Tests run trial processes beside other
# processes (other tests' trials, drivers, CI's second test run): on 2 busy cores a trial's
# spinning threads took twice the CPU and 1.6× the time (bopsweep train, 3 tiny epochs: 10.7 s
# of CPU instead of 4.8). Read by torch's OpenMP as it loads; every process the tests start
# inherits it. What bopsweep does is unchanged: users' trial processes get the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bopsweep.trial.cifar_files import make_synthetic
from tests.helpers import PG_URL, TINY_SETTINGS, add_trial, postgres_server_turn


@pytest.fixture(autouse=True)
def _postgres_server_turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """The tests run in two processes (pytest-xdist, pyproject.toml): the tests of the
    PostgreSQL test server share it, and one marked ``stops_server`` (it stops and restarts the
    server) has it alone, or the other process's tests would lose their connections."""
    node = request.node
    if PG_URL is None or not (node.get_closest_marker("postgres") or "pg" in node.fixturenames):
        yield
        return
    with postgres_server_turn(exclusive=node.get_closest_marker("stops_server") is not None):
        yield


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learnable 10-class data set in CIFAR-10's python format (1000 train, 300 test)."""
    root = tmp_path_factory.mktemp("cifar")
    make_synthetic(root, n_train=1000, n_test=300, seed=0, noise=25.0)
    return root


@pytest.fixture(scope="session")
def small_cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smaller data set (200 train, 50 test) for runs that only check bookkeeping."""
    root = tmp_path_factory.mktemp("cifar_small")
    make_synthetic(root, n_train=200, n_test=50, seed=1)
    return root


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file ``study.db`` in the test's folder (not made yet)."""
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def pg() -> Iterator[str]:
    """A fresh database on the PostgreSQL test server (``.ci/postgres.sh``, found through
    ``BOPSWEEP_TEST_POSTGRES``), dropped afterwards. Without a server the test skips on a
    developer machine, and fails in CI."""
    if PG_URL is None:
        if os.environ.get("CI"):
            pytest.fail("BOPSWEEP_TEST_POSTGRES is not set: .ci/run must start PostgreSQL")
        pytest.skip(
            "no PostgreSQL test server (run .ci/postgres.sh setup and set "
            "BOPSWEEP_TEST_POSTGRES to the URL it prints)"
        )
    import psycopg

    name = f"bopsweep_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def storage(request: pytest.FixtureRequest) -> str:
    """The URL of an empty database, once SQLite (``sqlite_url``) and once PostgreSQL
    (``pg``): a test that takes it holds for both backends."""
    return request.getfixturevalue("pg" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def study_db(tmp_path: Path) -> tuple[Path, str, list[dict]]:
    """A grid ``abl`` of two τ values (one trial crashed after an epoch and was retried) and
    one trial pruned, written directly (no training): (folder, URL, the trials written)."""
    import numpy as np

    from bopsweep.store import Store
    from bopsweep.studies import TrialConfig, expand, grid_study

    url = f"sqlite:///{tmp_path / 'study.db'}"
    base = TrialConfig(epochs=3, unbiased=True, **TINY_SETTINGS)
    store = Store(url, create=True)
    spec = grid_study("abl", base, {"tau": [1e-6, 1e-4]})
    study, _ = store.create(spec)
    rng = np.random.default_rng(0)
    written = []
    for p in expand(spec):
        args = (store, study, p.config, p.label, p.params, p.distributions, rng)
        if p.params["tau"] == 1e-4:
            written.append(add_trial(*args, epochs=1, state=optuna.trial.TrialState.FAIL))
            written.append(add_trial(*args, epochs=2, state=optuna.trial.TrialState.PRUNED))
        written.append(add_trial(*args))
    return tmp_path, url, written
