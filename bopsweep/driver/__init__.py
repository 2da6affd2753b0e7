"""The driver: runs a study's trials, one fresh process per trial, on every slot it has.

* :mod:`~bopsweep.driver.study`: :func:`run_study`, the entry point of every study command;
* :mod:`~bopsweep.driver.loop`: the event loop (:class:`Driver`, :class:`LoopSettings`);
* :mod:`~bopsweep.driver.launch`: which trials the next process trains, and starting it;
* :mod:`~bopsweep.driver.showing`: what the driver hands the command line's display;
* :mod:`~bopsweep.driver.environ`: the trial processes' environment, without secrets;
* :mod:`~bopsweep.driver.queue`: the study's trials in Optuna's storage (queueing, claiming,
  ending); :mod:`~bopsweep.driver.study_trials`: what the study holds, read;
* :mod:`~bopsweep.driver.process`: slots and trial processes;
* :mod:`~bopsweep.driver.protocol`: what a trial process and the driver say to each other;
* :mod:`~bopsweep.driver.messages`: those messages, applied as they arrive;
* :mod:`~bopsweep.driver.child`: the trial process itself;
* :mod:`~bopsweep.driver.outcome`: how a trial ended (pure rules);
* :mod:`~bopsweep.driver.recorder`: the driver's writes to the database.
"""

from bopsweep.driver.loop import Driver, LoopSettings
from bopsweep.driver.process import Slot, make_slots
from bopsweep.driver.study import DispatchOptions, run_study, search_of

__all__ = [
    "DispatchOptions",
    "Driver",
    "LoopSettings",
    "Slot",
    "make_slots",
    "run_study",
    "search_of",
]
