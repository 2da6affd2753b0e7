"""What to run: a trial's configuration, study definitions and files, their plan, and searches.

* :mod:`~bopsweep.trial.config`: :class:`TrialConfig`, one training run, checked;
* :mod:`~bopsweep.studies.spec`: :class:`StudySpec`, base × arms × grid × seeds, of a design;
* :mod:`~bopsweep.studies.stored`: a spec read back from a study's stored definition;
* :mod:`~bopsweep.studies.designs`: the designs (grid, pow10, schedule, arms, Optuna search),
  each with its builder, study-file sections, stored form and figures;
* :mod:`~bopsweep.studies.builders`: what the builders and study commands share;
* :mod:`~bopsweep.studies.study_file`: TOML study files (:mod:`~bopsweep.studies.tables`);
* :mod:`~bopsweep.studies.plan`: a spec's trials, their ids and Optuna params;
* :mod:`~bopsweep.studies.search`: the Optuna search space and settings;
* :mod:`~bopsweep.studies.samplers`: Optuna's samplers and pruners, name → factory.
"""

from bopsweep.studies.builders import decades_around, parse_axis
from bopsweep.studies.designs import (
    Design,
    grid_study,
    optuna_study,
    parse_pow10_range,
    pow10_study,
    schedule_study,
    stored_design,
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
    "Design",
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
    "stored_design",
    "trial_params",
]
