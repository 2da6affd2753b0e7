"""Shared fixtures: small CIFAR-format data sets written to disk and loaded by the real loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from bopsweep.trial.data import make_synthetic


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
