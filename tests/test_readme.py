"""The README and docs/ stay true: the quick start runs as written and draws the figure it
names, every relative link lands on a file (and heading), and the README stays a few screens."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 240

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def _section(text: str, heading: str) -> str:
    """The text under the ``## `` heading that starts with ``heading``, up to the next one."""
    start = text.index("\n" + heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _quick_start() -> tuple[str, str]:
    """The quick start's first shell block, and the prose after it."""
    section = _section(README.read_text(encoding="utf-8"), "## Quick start")
    block = section.split("```bash\n", 1)[1].split("```", 1)
    return block[0], block[1]


def _bopsweep_lines(block: str) -> list[list[str]]:
    """The block's ``bopsweep …`` commands, continuation lines joined and comments dropped."""
    joined = block.replace("\\\n", " ")
    return [
        shlex.split(line, comments=True)
        for line in joined.splitlines()
        if line.strip().startswith("bopsweep ")
    ]


def test_the_readme_is_a_few_screens():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_the_quick_start_is_a_cpu_sized_run_that_draws_a_figure():
    block, _ = _quick_start()
    commands = _bopsweep_lines(block)
    assert [c[1] for c in commands] == ["grid", "plot"]
    grid = commands[0]
    assert float(grid[grid.index("--width") + 1]) <= 0.125
    assert int(grid[grid.index("--subset") + 1]) <= 1000
    assert re.findall(r"\S+\.png", block), "the block names the figure it draws"


@pytest.mark.slow
def test_the_quick_start_runs_on_generated_data_and_draws_its_figure(tmp_path):
    """Every ``bopsweep`` line of the quick start, through the real command line, with the data
    the README's offline sentence generates in place of ``--download``, and 2 epochs instead of
    the README's 10 (the commands, options and figure are the README's; the epochs only cost CI
    minutes: 5 trials × 2 epochs at width 1/8, about a minute on 2 cores)."""
    block, prose = _quick_start()
    prose = " ".join(prose.split())  # the sentence may wrap anywhere
    generate = re.search(r'`python -c "([^"]+)"`', prose)
    instead = re.search(r"pass `(--data-dir [^`]+)` instead of `--download`", prose)
    assert generate and instead, "the quick start says how to run it on generated data"
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # this checkout's bopsweep
    env.pop("BOPSWEEP_STORAGE", None)
    subprocess.run(
        [sys.executable, "-c", generate.group(1)], cwd=tmp_path, env=env, check=True, timeout=120
    )
    for args in _bopsweep_lines(block):
        if "--download" in args:
            at = args.index("--download")
            args[at : at + 1] = shlex.split(instead.group(1))
        if "--epochs" in args:
            args[args.index("--epochs") + 1] = "2"
        result = subprocess.run(
            [sys.executable, "-m", "bopsweep", *args[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
    for figure in re.findall(r"\S+\.png", block):
        assert (tmp_path / figure).is_file(), f"{figure} was not drawn"


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces → ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link: its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            slug = base = _slug(match.group(1))
            n = 0
            while slug in found:
                n += 1
                slug = f"{base}-{n}"
            found.add(slug)
    return found


def _relative_links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands_on_a_file_and_heading(page):
    broken = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        landing = (page.parent / path).resolve() if path else page
        if not landing.exists():
            broken.append(f"{target}: no such file")
        elif anchor and landing.suffix == ".md" and anchor not in _anchors(landing):
            broken.append(f"{target}: no heading #{anchor} in {landing.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_checker_sees_links_and_anchors():
    """The checks above would pass vacuously if the patterns found nothing."""
    assert any("docs/" in t for t in _relative_links(README))
    assert "figures-bopsweep-plot" in _anchors(ROOT / "docs" / "readers.md")
    assert _slug("3. Bop ([Bop] Alg. 2) — `bop.py`") == "3-bop-bop-alg-2--boppy"
