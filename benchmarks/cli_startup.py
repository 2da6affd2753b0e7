"""Start-up of the command line: ``bopsweep --help`` against ``python -c "import typer"``."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.harness import measure, report


def run(rounds: int = 7) -> dict:
    def command(*args: str):
        return lambda: subprocess.run([sys.executable, *args], check=True, capture_output=True)

    results = measure(
        {
            "python -c 'import typer'": command("-c", "import typer"),
            "bopsweep --help": command("-m", "bopsweep", "--help"),
        },
        "python -c 'import typer'",
        rounds,
        inner=1,
    )
    report("command-line start-up", results, "python -c 'import typer'")
    return results


if __name__ == "__main__":
    run()
