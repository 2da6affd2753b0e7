"""What to run: a trial's configuration, study definitions and files, their plan, and searches.

* :mod:`~bopsweep.trial.config`: :class:`TrialConfig`, one training run, checked;
* :mod:`~bopsweep.studies.spec`: :class:`StudySpec`, base × arms × grid × seeds;
* :mod:`~bopsweep.studies.builders`: one builder per study kind (grid, pow10, schedule, optuna);
* :mod:`~bopsweep.studies.study_file`: TOML study files;
* :mod:`~bopsweep.studies.plan`: a spec's trials, their ids and Optuna params;
* :mod:`~bopsweep.studies.search`: the Optuna search space, samplers and pruners.
"""

from bopsweep.studies.builders import (
    decades_around,
    grid_study,
    optuna_study,
    parse_axis,
    parse_pow10_range,
    pow10_study,
    schedule_study,
)
from bopsweep.studies.plan import (
    PlannedTrial,
    check_size,
    config_id,
    count_trials,
    describe_config,
    expand,
    param_distributions,
    plan_distributions,
    trial_params,
)
from bopsweep.studies.spec import StudySpec
from bopsweep.studies.study_file import load_study_file
from bopsweep.trial.config import TrialConfig

__all__ = [
    "PlannedTrial",
    "StudySpec",
    "TrialConfig",
    "check_size",
    "config_id",
    "count_trials",
    "decades_around",
    "describe_config",
    "expand",
    "grid_study",
    "load_study_file",
    "optuna_study",
    "param_distributions",
    "parse_axis",
    "parse_pow10_range",
    "plan_distributions",
    "pow10_study",
    "schedule_study",
    "trial_params",
]
