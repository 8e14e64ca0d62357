"""The README and the pages under docs/ link to files and headings that
exist, and the README stays short enough to read on two screens."""
import re
from pathlib import Path
from typing import List, Set

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
LINK = re.compile(r'\]\(([^)\s]+)\)')


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r'[`*_]', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(page: Path) -> Set[str]:
    found, in_code = set(), False
    for line in page.read_text().splitlines():
        if line.startswith('```'):
            in_code = not in_code
        elif not in_code and line.startswith('#'):
            found.add(github_slug(line.lstrip('#')))
    return found


def broken_links(page: Path) -> List[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r'[a-z]+://', target) or target.startswith('mailto:'):
            continue
        path, _, anchor = target.partition('#')
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f'{target} (no file {linked})')
        elif anchor and linked.suffix == '.md' and \
                anchor not in anchors(linked):
            broken.append(f'{target} (no heading #{anchor} in {linked.name})')
    return broken


def test_slug_follows_github():
    assert github_slug(' Inherit mmspd\'s configs') == 'inherit-mmspds-configs'
    assert github_slug(' 7. Results') == '7-results'
    assert github_slug(' Telemetry: `SPDMonitorHook`') == 'telemetry-spdmonitorhook'


def test_checker_reports_a_missing_file_and_heading(tmp_path):
    page = tmp_path / 'page.md'
    (tmp_path / 'other.md').write_text('# Here\n')
    page.write_text('[a](other.md#here) [b](other.md#gone) [c](none.md)\n')
    assert [link.split(' ')[0] for link in broken_links(page)] == [
        'other.md#gone', 'none.md']


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    assert broken_links(page) == []


def test_readme_fits_two_screens():
    lines = (REPO / 'README.md').read_text().count('\n')
    assert lines <= 200, f'README.md has {lines} lines (at most 200)'
