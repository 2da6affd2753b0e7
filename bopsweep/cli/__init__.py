"""The ``bopsweep`` command line: parsing only; the work is done by the modules it calls.

* :mod:`~bopsweep.cli.app`: the Typer app, errors as one line;
* :mod:`~bopsweep.cli.options`: the typed options, each written once;
* :mod:`~bopsweep.cli.train`: ``train``;
* :mod:`~bopsweep.cli.studies`: ``grid``, ``pow10``, ``schedule``, ``run``, ``optuna``;
* :mod:`~bopsweep.cli.join`: ``resume``, ``worker``;
* :mod:`~bopsweep.cli.inspect`: ``status``, ``studies``, ``table``, ``export``, ``plot``;
* :mod:`~bopsweep.cli.manage`: ``delete``.

Heavy packages (torch, optuna, matplotlib, and :mod:`bopsweep.studies`) are imported inside
the commands, so ``--help`` stays instant; Rich, which draws a command's ``--help`` in panels
(Trial, Study, Dispatch, Storage, Output), only by that ``--help``.
"""

# registers the commands, in the order --help lists them
from bopsweep.cli import train, studies, join, inspect, manage  # noqa: F401, I001
from bopsweep.cli.app import app

__all__ = ["app"]
