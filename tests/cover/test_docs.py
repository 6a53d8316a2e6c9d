"""The README and docs/: every relative link leads to a file (and a heading) that exists,
every picture is there, and the README's minimal scenario validates and passes as copied."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mwsim import cli

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    fenced, found = False, set()
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(_anchor(line.lstrip("#")))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_picture_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in _anchors(linked), f"{page.name}: no heading #{anchor} in {path}"


def test_every_docs_page_is_listed_in_the_index():
    index = (ROOT / "docs" / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name


def test_the_readmes_minimal_scenario_validates_and_passes_as_copied(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own scenario", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    mine = tmp_path / "my-first.yaml"
    mine.write_text(block.group(1))
    runner = CliRunner()
    assert runner.invoke(cli.main, ["validate", str(mine)]).exit_code == 0
    ran = runner.invoke(cli.main, ["run", str(mine), "--sim", "--out", str(tmp_path / "o")])
    assert ran.exit_code == 0, ran.output
