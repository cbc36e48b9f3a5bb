"""The pages people read first stay short, linked and portable (issue #32): pure Python, no Spark.

- analysis.md, the grader's page, has at most 2,000 words outside fenced code blocks. A word is a whitespace-separated
  token of the text once every fenced block (from a line opening with ``` or ~~~ to the line closing it) is removed;
  tables, links and inline code count like any other text.
- Every relative link (markdown links and images) in README.md, analysis.md and docs/*.md resolves to an existing
  file; an anchor after `#` is ignored, and http(s) and mailto links are not checked.
- README.md's first screen (its first 40 lines) gives `make demo` and `make test`.
- No committed markdown names an absolute path of one machine (/work/, /tmp/, /root/).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANALYSIS_MAX_WORDS = 2_000
FIRST_SCREEN_LINES = 40
FENCE = re.compile(r"^(`{3,}|~{3,})")
# [text](target) and ![alt](target), the target up to whitespace or the closing parenthesis; an optional "title".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
MACHINE_PATHS = ("/work/", "/tmp/", "/root/")


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "analysis.md", *sorted((ROOT / "docs").glob("*.md"))]


def without_fences(text: str) -> str:
    """The text with every fenced code block removed (an unclosed fence runs to the end, as markdown renders it)."""
    kept: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        opening = FENCE.match(line.lstrip())
        if fence is None and opening:
            fence = opening.group(1)[0] * 3
        elif fence is not None and line.lstrip().startswith(fence):
            fence = None
        elif fence is None:
            kept.append(line)
    return "\n".join(kept)


def relative_links(text: str) -> list[str]:
    """Link and image targets outside fenced blocks that point into the repository."""
    targets = [m.group(1) for m in LINK.finditer(without_fences(text))]
    return [t for t in targets if not re.match(r"^(https?:|mailto:|#)", t)]


def committed_markdown() -> list[Path]:
    """Markdown files git tracks or would add (untracked, not ignored); every .md under the root without git."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"], cwd=ROOT,
                                capture_output=True, text=True, check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return [p for p in ROOT.rglob("*.md") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_the_helpers_count_words_outside_fences_and_find_relative_links():
    text = "one two\n```bash\nmake demo\n```\nthree [a](docs/x.md#part) ![b](img.png) [c](https://example.com)\n"
    assert len(without_fences(text).split()) == 6
    assert relative_links(text) == ["docs/x.md#part", "img.png"]


def test_analysis_is_at_most_2000_words_outside_code_blocks():
    words = len(without_fences((ROOT / "analysis.md").read_text(encoding="utf-8")).split())
    assert words <= ANALYSIS_MAX_WORDS, f"analysis.md has {words:,} words outside code blocks"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    missing = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).is_file():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_readme_first_screen_gives_make_demo_and_make_test():
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN_LINES])
    assert "make demo" in first_screen and "make test" in first_screen


def test_no_committed_markdown_names_a_machines_absolute_path():
    found = [f"{page.relative_to(ROOT)}:{number}: {line.strip()}" for page in committed_markdown()
             for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
             if any(machine in line for machine in MACHINE_PATHS)]
    assert not found, "absolute paths of one machine:\n" + "\n".join(found)


def test_the_bench_page_numbers_its_sections_in_order(tmp_path):
    """results.md, rendered from the committed results.json, has its sections numbered 1, 2, 3... in page order (a
    reader follows analysis.md's "section 5" down the page), each number once."""
    import json

    from benchmarks.bench import render

    page = render(json.loads((ROOT / "bench_results" / "results.json").read_text(encoding="utf-8")))
    numbers = [int(n) for n in re.findall(r"^## (\d+)\.", page, flags=re.MULTILINE)]
    assert numbers == sorted(set(numbers)) and numbers[:2] == [1, 2], numbers
    assert page == (ROOT / "bench_results" / "results.md").read_text(encoding="utf-8"), \
        "results.md is stale: python -m benchmarks.bench --render-only"


def test_analysis_names_no_issue_number():
    """The grader's page reads on its own: no "issue #32" pointing into a tracker the reader cannot see."""
    text = without_fences((ROOT / "analysis.md").read_text(encoding="utf-8"))
    assert not re.findall(r"(?i)issue\s*#?\d+|#\d{2,}\b", text)
