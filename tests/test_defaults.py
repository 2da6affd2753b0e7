"""One source of defaults: the library parts that cannot import it agree with it."""

from __future__ import annotations

import inspect

from bopsweep import defaults
from bopsweep.models import INITS, NORMS
from bopsweep.optim import Bop, Bop2ndOrder
from bopsweep.studies import TrialConfig


def test_the_optimizers_defaults_are_bopsweeps():
    for cls, name in ((Bop, "bop"), (Bop2ndOrder, "bop2")):
        params = inspect.signature(cls).parameters
        assert {k: params[k].default for k in defaults.OPTIMIZER_DEFAULTS[name]} == (
            defaults.OPTIMIZER_DEFAULTS[name]
        )
    assert inspect.signature(Bop2ndOrder).parameters["eps"].default == defaults.EPS


def test_the_model_builds_every_norm_and_start_the_tool_offers():
    assert set(NORMS) == set(defaults.values(defaults.Norm))
    assert set(INITS) == set(defaults.values(defaults.Init))


def test_an_unset_hyperparameter_takes_its_optimizers_default():
    for optimizer, values in defaults.OPTIMIZER_DEFAULTS.items():
        config = TrialConfig(optimizer=str(optimizer)).resolved()
        assert {k: getattr(config, k) for k in values} == values


def test_variants_round_trip():
    for variant in defaults.Variant:
        assert defaults.variant_of(*defaults.optimizer_of(variant.value)) == variant.value
    assert defaults.variant_name("bop2", True) == "Bop2ndOrder unbiased"
