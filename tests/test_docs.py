"""The documentation: generated parts are current, the README stays short, figures are dated, links resolve."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sweep import docs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 200

# a number followed by a unit of time, memory, throughput or a speed-up: "9.5 min", "53.7 ms", "513.1 MiB", "1.5x"
FIGURE = re.compile(r"\b\d+(?:[.,]\d+)?\s?(?:samples/s|minutes?|min|seconds?|ms|s|MiB|GiB|x)(?![\w/])")
DATE = re.compile(r"\b2026-\d{2}-\d{2}\b")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", _prose(path.read_text()), flags=re.M)}


def test_generated_docs_are_current():
    out = docs.render(ROOT)
    for path, text in out.items():
        assert path.exists(), f"{path.relative_to(ROOT)} is missing: run `python -m sweep.docs`"
        assert path.read_text() == text, (
            f"{path.relative_to(ROOT)} is stale (a metric in src/sweep/metrics.py or an experiment in "
            "conf/experiment/ changed without regenerating): run `python -m sweep.docs`")


def test_a_new_experiment_without_regenerating_is_caught(tmp_path):
    shutil.copy(README, tmp_path / "README.md")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "metrics.md", tmp_path / "docs" / "metrics.md")
    shutil.copytree(ROOT / "conf" / "experiment", tmp_path / "conf" / "experiment")
    assert docs.stale(tmp_path) == []
    (tmp_path / "conf" / "experiment" / "zz_new.yaml").write_text(
        "# @package _global_\n# A new question.\nname: zz_new\nsweep:\n  n_trials: 2\n  sampler: grid\n")
    assert docs.stale(tmp_path) == [tmp_path / "README.md"]
    assert docs.main(["--root", str(tmp_path), "--check"]) == 1
    assert docs.main(["--root", str(tmp_path)]) == 0
    assert docs.stale(tmp_path) == []
    assert "| `zz_new` | A new question. | 2 | grid |" in (tmp_path / "README.md").read_text()


def test_every_metric_is_on_the_metrics_page():
    page = (ROOT / "docs" / "metrics.md").read_text()
    from sweep.metrics import METRICS

    for m in METRICS:
        assert f"| `{m.name}` | {m.unit} | {m.direction.value} |" in page


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, (f"README.md has {n} lines (at most {MAX_README_LINES}): move detail into a "
                                   "docs/ page and link it")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_with_figures_are_dated(page):
    text = page.read_text()
    figures = FIGURE.findall(_prose(text))
    if figures:
        assert DATE.search(text), (f"docs/{page.name} quotes figures ({', '.join(figures[:3])}, ...) but no date: "
                                   "add a line such as 'Measured 2026-11-24 on a 2-core dev machine, CPU only'")


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {'; '.join(broken)}"
