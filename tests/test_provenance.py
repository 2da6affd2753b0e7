"""Where a trial's numbers come from: every trial stores its code, software, machine and data;
``status --format json`` and ``export`` carry it, and ``table`` says when the trials it
compares were not run alike."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from bopsweep.attr_keys import PROVENANCE_FIELDS
from bopsweep.defaults import TableFormat
from bopsweep.readers.table import build_table, group_arms
from bopsweep.readers.table_render import render
from bopsweep.store import Store
from bopsweep.store.trial_config import config_attrs, study_base
from bopsweep.studies import TrialConfig, expand, grid_study
from bopsweep.trial.cifar_files import fingerprint
from bopsweep.trial.provenance import collect
from tests.helpers import TINY, bopsweep, invoke

ROOT = Path(__file__).resolve().parents[1]


def test_a_trial_process_knows_its_code_software_and_machine():
    got = collect("cpu")
    assert set(got) | {"data"} == set(PROVENANCE_FIELDS)  # the driver adds the data's
    assert got["torch"] == torch.__version__ and got["cuda"] == torch.version.cuda
    assert got["python"] == platform.python_version() and got["host"] == socket.gethostname()
    assert got["gpu"] is None  # on the CPU
    if (ROOT / ".git").exists():  # run from this checkout
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        assert got["commit"] == head.stdout.strip() and isinstance(got["dirty"], bool)


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["1", "2"])  # 2: both trials in one process
def test_every_trial_stores_its_provenance_and_status_and_export_carry_it(
    small_cifar_dir, tmp_path, stack
):
    args = ["grid", "--param", "gamma", "--values", "1e-7,1e-6", "--epochs", "1", "--stack", stack]
    result = bopsweep(*args, "--data-dir", str(small_cifar_dir), *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="grid-gamma", storage=f"sqlite:///{tmp_path}/study.db")
    expected = {**collect("cpu"), "data": fingerprint(small_cifar_dir)}
    assert [t.user_attrs["provenance"] for t in study.trials] == [expected, expected]

    status = invoke(["status", str(tmp_path / "study.db"), "--format", "json"])
    assert status.exit_code == 0, status.output
    assert [t["provenance"] for t in json.loads(status.output)["trials"]] == [expected] * 2

    out = tmp_path / "trials.csv"
    assert invoke(["export", str(tmp_path / "study.db"), "-o", str(out)]).exit_code == 0
    frame = pd.read_csv(out)
    assert list(frame["provenance_torch"]) == [torch.__version__] * 2
    assert list(frame["provenance_data"]) == [expected["data"]] * 2
    assert list(frame["provenance_host"]) == [socket.gethostname()] * 2


RUN_ALIKE = {"bopsweep": "0.4.0", "commit": "abc", "dirty": False, "python": "3.11.7",
             "torch": "2.14.1", "cuda": None, "cudnn": None, "host": "node1", "gpu": None,
             "data": "d1"}  # fmt: skip


def table_of(tmp_path, provenances):
    """``table`` of a study of two τ values × 2 seeds whose trials record ``provenances``
    (one per trial, in order; None: none recorded)."""
    tmp_path.mkdir()
    store = Store(f"sqlite:///{tmp_path / 'study.db'}", create=True)
    spec = grid_study("t", TrialConfig(epochs=2), {"tau": [1e-6, 1e-4]}, seeds=2)
    study, _ = store.create(spec)
    base = study_base(study.user_attrs)
    for i, (p, provenance) in enumerate(zip(expand(spec), provenances, strict=True)):
        delta = config_attrs(p.config.to_dict(), base)
        attrs = {"config_id": p.config_id, "label": p.label, **delta}
        if provenance is not None:
            attrs["provenance"] = provenance
        study.add_trial(
            optuna.trial.create_trial(
                value=0.8 + i / 100, params=p.params, distributions=p.distributions,
                user_attrs=attrs,
            )
        )  # fmt: skip
    return build_table("t", group_arms(study.get_trials(), base))


def test_the_table_says_when_the_trials_it_compares_were_not_run_alike(tmp_path):
    alike = table_of(tmp_path / "a", [RUN_ALIKE] * 4)
    assert alike.provenance is None
    assert "Provenance" not in render(alike, TableFormat.MARKDOWN)
    other = {**RUN_ALIKE, "torch": "2.13.0", "host": "node2"}
    mixed = table_of(tmp_path / "b", [RUN_ALIKE, RUN_ALIKE, other, None])
    assert mixed.provenance is not None
    assert "torch (2.13.0, 2.14.1)" in mixed.provenance
    assert "host (node1, node2)" in mixed.provenance
    assert "1 of the 4 record none" in mixed.provenance
    assert "commit" not in mixed.provenance  # the same in every trial that records one
    assert f"**Provenance.** {mixed.provenance}" in render(mixed, TableFormat.MARKDOWN)
    assert f"% {mixed.provenance}" in render(mixed, TableFormat.LATEX)
    assert table_of(tmp_path / "c", [None] * 4).provenance is None  # none records any
