"""Every default, choice and variant of bopsweep, written once.

The configuration (:mod:`bopsweep.trial.config`), the study builders, the search space, the
driver and the command line's options and help texts all read their defaults and choices from
here. Imports nothing, so ``bopsweep --help`` stays instant.

The optimizers in :mod:`bopsweep.optim` are a standalone library (they import nothing from
bopsweep); their constructor defaults are the same numbers as :data:`OPTIMIZER_DEFAULTS`, and
``tests/test_defaults.py`` checks that they agree.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A fixed set of strings; shown and stored as its value."""

    def __str__(self) -> str:
        return self.value


class Optimizer(Choice):
    BOP = "bop"
    BOP2 = "bop2"  # Bop2ndOrder
    LATENT = "latent"  # latent weights with Adam and the straight-through estimator


class Variant(Choice):
    """An optimizer and, for Bop2ndOrder, whether it is bias-corrected (Eq. 10)."""

    BOP = "bop"
    BOP2_BIASED = "bop2-biased"
    BOP2_UNBIASED = "bop2-unbiased"
    LATENT = "latent"


class Norm(Choice):
    BATCH = "batch"
    LAYER = "layer"


class Init(Choice):
    GLOROT = "glorot"  # the reference code's start
    SIGN = "sign"  # ±1, the paper's description


class ScheduleKind(Choice):
    CONSTANT = "constant"
    EXPONENTIAL = "exponential"
    POLYNOMIAL = "polynomial"


class Sampler(Choice):
    TPE = "tpe"
    RANDOM = "random"
    CMAES = "cmaes"
    QMC = "qmc"


class Pruner(Choice):
    NONE = "none"
    MEDIAN = "median"
    HYPERBAND = "hyperband"


class ExportFormat(Choice):
    """What ``export`` writes; each is also the suffix (``.csv``, ...) that chooses it."""

    CSV = "csv"
    JSON = "json"
    PARQUET = "parquet"  # needs pyarrow: the optional extra bopsweep[parquet]


class InspectFormat(Choice):
    """How ``status`` and ``studies`` print: a table for people, JSON for programs."""

    TABLE = "table"
    JSON = "json"


class TableFormat(Choice):
    MARKDOWN = "markdown"
    LATEX = "latex"
    CSV = "csv"


class TableMetric(Choice):
    """Which accuracy of a trial the table's tests compare: the last epoch's or the best."""

    FINAL = "final"
    BEST = "best"


class FigureFormat(Choice):
    PNG = "png"
    PDF = "pdf"
    SVG = "svg"


def values(choice: type[Choice]) -> tuple[str, ...]:
    """The strings of a choice, in order."""
    return tuple(c.value for c in choice)


def variant_of(optimizer: str, unbiased: bool) -> str:
    """The variant an optimizer setting names (``unbiased`` matters for Bop2ndOrder only)."""
    if optimizer == Optimizer.BOP2:
        return Variant.BOP2_UNBIASED.value if unbiased else Variant.BOP2_BIASED.value
    return Variant(optimizer).value


def optimizer_of(variant: str) -> tuple[str, bool]:
    """(optimizer, unbiased) of a variant: the inverse of :func:`variant_of`."""
    if variant == Variant.BOP2_UNBIASED:
        return Optimizer.BOP2.value, True
    if variant == Variant.BOP2_BIASED:
        return Optimizer.BOP2.value, False
    return Optimizer(variant).value, False


VARIANT_NAMES = {
    Variant.BOP: "Bop",
    Variant.BOP2_BIASED: "Bop2ndOrder biased",
    Variant.BOP2_UNBIASED: "Bop2ndOrder unbiased",
    Variant.LATENT: "latent weights",
}


def variant_name(optimizer: str, unbiased: bool) -> str:
    """The variant as figures and tables name it, e.g. "Bop2ndOrder unbiased"."""
    return VARIANT_NAMES[Variant(variant_of(optimizer, unbiased))]


# --- one trial ---------------------------------------------------------------------------------
# Per optimizer: Bop as Helwegen et al. (NeurIPS 2019) ran it on CIFAR-10; Bop2ndOrder at the
# optimum of Suarez-Ramirez et al. (CVPRW 2021, §5.1.1). Unset γ, σ, τ take these.
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    Optimizer.BOP.value: {"gamma": 1e-4, "tau": 1e-8},
    Optimizer.BOP2.value: {"gamma": 1e-7, "sigma": 1e-3, "tau": 1e-6},
    Optimizer.LATENT.value: {},
}
OPTIMIZER = Optimizer.BOP2.value
EPS = 1e-10  # of Bop2ndOrder's denominator: with σ as small as 1e-7 a larger ε changes flips
LR = 0.01  # Adam, for the real-valued parameters (and the latent weights)
WEIGHT_DECAY = 0.0  # classic L2 on the latent kernels (latent optimizer only)
EPOCHS = 100
BATCH_SIZE = 100
WIDTH = 1.0
NORM = Norm.BATCH.value
INIT = Init.GLOROT.value
DEVICE = "auto"
SEED = 0
SEED_LIMIT = 2**32  # seeds in [0, 2^32): numpy's and torch's generators take them all
LOG_EVERY = 10  # steps per logged π_t row

# --- studies -----------------------------------------------------------------------------------
# The paper's base point (§5.1.2): Bop2ndOrder, unbiased, batch norm, at its optimum.
PAPER_BASE: dict[str, object] = {
    "optimizer": Optimizer.BOP2.value,
    "unbiased": True,
    **OPTIMIZER_DEFAULTS[Optimizer.BOP2.value],
}
MAX_TRIALS = 10_000  # a study above this needs --max-trials: a typo in a grid costs GPU-months
SEARCH_TRIALS = 50
SEARCH_RANGES = {"gamma": (1e-10, 1e-4), "sigma": (1e-6, 1.0), "tau": (1e-9, 1e-3)}
SCHEDULE_FACTOR = 10.0
# Fig. 4 as the reference code ran it: Adam's lr also ×0.1 every 100 epochs (its lr_decay)
LR_DECAY = 0.1

# --- where and how trials run ------------------------------------------------------------------
STORAGE_ENV = "BOPSWEEP_STORAGE"
DEFAULT_STORAGE = "sqlite:///study.db"
MAX_RETRIES = 2
PER_GPU = 1
# memory one trial process may take, for the cap on --workers / --per-gpu (bopsweep.driver.
# process.slot_capacity): a rough upper bound: torch imported (~0.3 GB), CIFAR-10 in memory
# (~0.2 GB as bytes, more while batches are made), a width-1 BinaryNet with its optimizer state
# and activations (~0.3 GB); with warm starts its zygote shares most of its pages
MEMORY_PER_TRIAL = 2**30
# trial processes forked from a zygote (one per slot environment) that has imported torch and
# loaded the data (bopsweep.driver.warm), instead of started from scratch: seconds saved per
# trial; Linux only
WARM_STARTS = True
# trials per process, trained as one stacked model (bopsweep.models.stacked). 1 by default: on
# the CPU a stack saves only per-trial overhead: 2x on tiny trials, 1.01-1.06x on real ones
# (benchmarks/stack.py); a GPU, where one BinaryNet trial leaves most of the device idle, is
# where it should pay, not yet measured
STACK = 1
MAX_STACK = 64  # a guard against typos: more members than that fill no device better
HEARTBEAT_INTERVAL = 60  # seconds, shared databases only
GRACE_PERIOD = 600  # seconds without a heartbeat before another worker re-queues a trial
