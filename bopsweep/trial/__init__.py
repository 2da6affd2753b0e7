"""One trial: its settings, declared once (:mod:`bopsweep.trial.settings`)."""
