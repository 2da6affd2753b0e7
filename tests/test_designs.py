"""Study designs are types: each round-trips through the definition its study stores, which is
the one bopsweep has always stored (databases made before load and resume, and ones made now
read back in earlier versions); a definition of a kind bopsweep does not know is one line; the
sampler and pruner tables build every choice; plots draw every figure a design may name."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from bopsweep.defaults import Pruner, Sampler
from bopsweep.driver.study import stored_spec
from bopsweep.errors import UserError
from bopsweep.readers.plots.index import DRAWERS
from bopsweep.store import SPEC_ATTR, Store
from bopsweep.studies import (
    TrialConfig,
    grid_study,
    load_study_file,
    optuna_study,
    pow10_study,
    schedule_study,
)
from bopsweep.studies.designs import (
    DESIGNS,
    ArmsDesign,
    FigureName,
    GridDesign,
    Pow10Design,
    ScheduleDesign,
    SearchDesign,
)
from bopsweep.studies.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler
from bopsweep.studies.search import SearchSettings, SearchSpace, space_for
from bopsweep.studies.stored import spec_from_stored
from tests.helpers import invoke, one_line_error

STUDIES = Path(__file__).parent.parent / "studies"
# Definitions as bopsweep stored them before its designs were types (one JSON document a line,
# byte for byte as in a database): the studies BUILT below, and studies/adam_lr.toml.
STORED = Path(__file__).with_name("stored_definitions.jsonl")
BASE = TrialConfig(epochs=7)
SEARCH_SPACE = space_for(None, {"gamma": "1e-9:1e-5"}, ["sigma=1e-3"], {"norm": "batch"})
BUILT = {
    "g": grid_study("g", BASE, {"gamma": [1e-7, 1e-8], "norm": ["batch", "layer"]}, 2, "d"),
    "p": pow10_study("p", BASE, {"gamma": "1e-9:1e-7", "tau": "1e-8:1e-6"}),
    "s": schedule_study("s", BASE, "tau", "exponential", None, 10.0, None, lr_every=3),
    "s2": schedule_study("s2", BASE, "gamma", "polynomial", 100, 10, ["biased"]),
    "o": optuna_study("o", BASE, SEARCH_SPACE, 20, "cmaes", 5, "hyperband", seeds=3),
    "adam-lr": load_study_file(STUDIES / "adam_lr.toml"),
}
DESIGN_OF = {
    "g": GridDesign,
    "p": Pow10Design,
    "s": ScheduleDesign,
    "s2": ScheduleDesign,
    "o": SearchDesign,
    "adam-lr": ArmsDesign,
}


def stored_lines() -> list[str]:
    return STORED.read_text().splitlines()


def test_every_design_has_a_study_here():
    assert {type(spec.design) for spec in BUILT.values()} == set(DESIGNS.values())
    assert [json.loads(line)["name"] for line in stored_lines()] == list(BUILT)


@pytest.mark.parametrize("name", list(BUILT))
def test_each_design_round_trips_through_its_stored_definition(name):
    spec = BUILT[name]
    stored = json.dumps(spec.to_dict())
    again = spec_from_stored(json.loads(stored))
    assert type(again.design) is DESIGN_OF[name] and again.design == spec.design
    assert json.dumps(again.to_dict()) == stored


def without_base(definition: dict) -> str:
    """A definition without its base (whose settings grow with bopsweep), as stored."""
    return json.dumps({k: v for k, v in definition.items() if k != "base"})


@pytest.mark.parametrize("line", stored_lines(), ids=lambda line: json.loads(line)["name"])
def test_a_study_made_now_stores_the_definition_bopsweep_always_stored(line):
    old = json.loads(line)
    assert without_base(BUILT[old["name"]].to_dict()) == without_base(old)


def test_definitions_stored_earlier_load_into_their_design_and_read_back_the_same(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url, create=True)
    for line in stored_lines():
        old = json.loads(line)
        study = optuna.create_study(study_name=old["name"], storage=store.storage)
        study.set_user_attr(SPEC_ATTR, old)
    store.engine.dispose()
    for line in stored_lines():
        old = json.loads(line)
        spec = stored_spec(url, old["name"])  # as resume and worker read it
        assert type(spec.design) is DESIGN_OF[old["name"]]
        assert without_base(spec.to_dict()) == without_base(old)
    search = stored_spec(url, "o").design
    assert isinstance(search, SearchDesign)
    assert search.settings == SearchSettings(SEARCH_SPACE, 20, Sampler.CMAES, 5, Pruner.HYPERBAND)
    polynomial = stored_spec(url, "s2").design
    assert polynomial == ScheduleDesign(("gamma",), "gamma", "polynomial", 100, 10)


def foreign_db(tmp_path: Path, change: dict) -> Path:
    """A database holding search "o", whose definition another tool changed by ``change``."""
    db = tmp_path / "study.db"
    store = Store(f"sqlite:///{db}", create=True)
    study, _ = store.create(BUILT["o"])
    study.set_user_attr(SPEC_ATTR, {**BUILT["o"].to_dict(), **change})
    store.engine.dispose()
    return db


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "bayesian"}, "unknown study kind 'bayesian'; use grid, pow10, schedule, arms or"),
        ({"kind": 3}, "holds kind of int, not str"),
        ({"meta": {"trials": 5}}, "of kind 'optuna' lacks meta"),
        ({"kind": "schedule"}, "of kind 'schedule' has unknown meta"),
        ({"meta": {**BUILT["o"].to_dict()["meta"], "trials": "many"}}, "meta trials of str"),
        ({"meta": {**BUILT["o"].to_dict()["meta"], "sampler": "gp"}}, "unknown sampler 'gp'"),
        ({"meta": {**BUILT["o"].to_dict()["meta"], "space": {}}}, "search space that cannot be"),
        ({"meta": []}, "holds meta of list"),
    ],
)
def test_a_definition_another_tool_wrote_is_one_line(tmp_path, change, message):
    db = foreign_db(tmp_path, change)
    for command in (["status"], ["resume"], ["plot", "--out", str(tmp_path / "figures")]):
        result = invoke([command[0], str(db), *command[1:]])
        one_line_error(result, message)
        assert "study 'o'" in result.output


def test_the_sampler_and_pruner_tables_build_every_choice():
    assert set(SAMPLERS) == set(Sampler) and set(PRUNERS) == set(Pruner)
    for sampler in Sampler:
        assert isinstance(make_sampler(sampler, 0), optuna.samplers.BaseSampler)
    for pruner in Pruner:
        assert isinstance(make_pruner(pruner, 10), optuna.pruners.BasePruner)
    assert isinstance(make_sampler(Sampler.CMAES, 1), optuna.samplers.CmaEsSampler)
    assert isinstance(make_pruner(Pruner.HYPERBAND, 10), optuna.pruners.HyperbandPruner)


@pytest.mark.parametrize(
    "sampler, pruner, message",
    [
        ("gp", "none", "unknown sampler 'gp'; use one of tpe, random, cmaes, qmc"),
        ("tpe", "asha", "unknown pruner 'asha'; use one of none, median, hyperband"),
        (Sampler.TPE, 7, "unknown pruner 7"),
    ],
)
def test_search_settings_name_only_what_the_tables_build(sampler, pruner, message):
    with pytest.raises(UserError, match=message):
        SearchSettings.checked(SearchSpace(), 5, sampler, None, pruner)


def test_plots_draw_every_figure_a_design_may_name():
    assert set(DRAWERS) == set(FigureName)
    assert all(design.figures for design in DESIGNS.values())
