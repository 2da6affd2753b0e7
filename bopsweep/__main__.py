"""``python -m bopsweep`` is the ``bopsweep`` command."""

from bopsweep.cli import app

app(prog_name="bopsweep")
