"""Start-up of the command line: ``bopsweep --help`` against ``python -c "import typer"``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from benchmarks.harness import measure, report


def run(rounds: int = 7) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        # Both start from cached bytecode, as installed packages do (the warm-up writes it, to a
        # folder of its own): with PYTHONDONTWRITEBYTECODE set, bopsweep's modules would be
        # compiled at every start and typer's, installed precompiled, never.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache

        def command(*args: str):
            return lambda: subprocess.run(
                [sys.executable, *args], check=True, capture_output=True, env=env
            )

        results = measure(
            {
                "python -c 'import typer'": command("-c", "import typer"),
                "bopsweep --help": command("-m", "bopsweep", "--help"),
                "bopsweep grid --help": command("-m", "bopsweep", "grid", "--help"),
            },
            "python -c 'import typer'",
            rounds,
            inner=1,
        )
    report("command-line start-up", results, "python -c 'import typer'")
    return results


if __name__ == "__main__":
    run()
