"""Print a pip constraints file that pins every declared dependency to its declared floor.

    python3 .ci/lower_bounds.py > lowest.txt
    pip install -c lowest.txt -e ".[dev]"

Why: a floor in pyproject.toml (``numpy>=1.24``) is a promise that 1.24 works; only installing
exactly 1.24 checks it. Every dependency of ``[project.dependencies]`` and of each optional extra
except ``dev`` (the tools that test bopsweep need not be their oldest) becomes ``name==floor``,
its environment marker kept (``tomli==1.1; python_version < '3.11'``). Constraints cannot carry
extras, so ``psycopg[binary]>=3.1`` becomes ``psycopg==3.1``. A dependency without a ``>=``
floor is an error: every dependency must declare one. Standard library only (tomllib, or tomli
before Python 3.11), so it runs before anything is installed.
"""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

# name, optional [extras], version specifiers, optional "; marker"
REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;(.*))?$"
)
FLOOR = re.compile(r">=\s*([0-9][^,\s]*)")


def constraints(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra, extra_requirements in project.get("optional-dependencies", {}).items():
        if extra != "dev":
            requirements += extra_requirements
    lines: dict[str, str] = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"lower_bounds: cannot read the requirement {requirement!r}")
        name, specifiers, marker = match.groups()
        floor = FLOOR.search(specifiers)
        if floor is None:
            raise SystemExit(f"lower_bounds: {requirement!r} declares no lower bound (>=)")
        line = f"{name}=={floor.group(1)}" + (f"; {marker.strip()}" if marker else "")
        if lines.setdefault(name.lower(), line) != line:
            raise SystemExit(f"lower_bounds: two different floors for {name}")
    return list(lines.values())


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(constraints(root / "pyproject.toml")))
