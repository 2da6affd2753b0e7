"""bopsweep: hyperparameter ablation studies of binary optimizers (Bop, Bop2ndOrder).

The package root stays light: importing it does not import torch. The optimizers live in
:mod:`bopsweep.optim`, the model in :mod:`bopsweep.models`, one training trial in
:mod:`bopsweep.trial.train`.
"""

__version__ = "0.4.0"
