"""Every link in the docs and every repo path they name leads somewhere.

Checked: README.md, docs/*.md, bench/README.md, the Dockerfile, config/* and scripts/*.

- A relative Markdown link, `[text](path)`, `[text](path#anchor)` or `[text](#anchor)`
  (pictures too), names a file that exists, relative to the file it is in, and its anchor
  is a heading of that file by GitHub's rule (see ``slugs``).
- A path of ours named in plain text, a code span or a comment (`docs/...`, `config/...`,
  `scripts/...`, `bench/...`, `tests/....py`, `receiver/....py`, `.ci/run`) exists,
  relative to the repository's root; written `docs/x.md#anchor`, its anchor is checked too.
- The README links every page of docs/ and bench/README.md: a newcomer finds each of them
  from the first page.

RECEIVER_TEST_DOCS_REPO=/path/to/checkout runs the check on another checkout (read only).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

REPO = Path(os.environ.get("RECEIVER_TEST_DOCS_REPO") or Path(__file__).parent.parent).resolve()

# Named in the docs but made by the user, not kept in the repository: the env file
# copied from config/receiver.env.example, and bench/run.py's results (gitignored).
# A name ending in / stands for everything under it.
MADE_BY_THE_USER = ("config/receiver.env", "bench/results/")

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"[a-z][a-z0-9+.-]*:|//")
PATH_MENTION = re.compile(
    r"(?<![\w./-])"  # a whole path, not the tail of a URL or of another path
    r"((?:docs|config|scripts|bench)/[\w./-]*[\w/]|(?:tests|receiver)/[\w/]*\.py|\.ci/run)"
    r"(?:#([\w-]+))?"
)
HEADING = re.compile(r"#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
FENCE = re.compile(r"\s*(?:```|~~~)")


def checked_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "bench" / "README.md", REPO / "Dockerfile"]
    files += sorted((REPO / "docs").glob("*.md"))
    files += sorted(p for folder in ("config", "scripts") for p in (REPO / folder).iterdir())
    return [p for p in files if p.is_file() and not made_by_the_user(p.relative_to(REPO))]


def made_by_the_user(path: Path) -> bool:
    name = path.as_posix()
    return any(
        name == made.rstrip("/") or (made.endswith("/") and name.startswith(made))
        for made in MADE_BY_THE_USER
    )


def slugs(headings: list[str]) -> set[str]:
    """GitHub's anchors: lower case, punctuation but `-` and `_` dropped, spaces to `-`;
    the second heading with the same anchor gets `-1`, the third `-2`."""
    seen: Counter[str] = Counter()
    anchors = set()
    for heading in headings:
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return anchors


@cache
def anchors_of(path: Path) -> set[str]:
    """The anchors of a Markdown file's ATX headings (`#` to `######`), outside fenced code."""
    headings, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := HEADING.fullmatch(line)):
            headings.append(m.group(1))
    return slugs(headings)


def target_problem(path: Path, anchor: str | None) -> str | None:
    """What is wrong with a reference to ``path`` (and ``anchor`` in it), if anything."""
    if not path.exists():
        return "no such file"
    if anchor is None:
        return None
    if path.suffix != ".md":
        return "an anchor in a file that is not Markdown"
    if anchor not in anchors_of(path):
        return f"no heading there with the anchor #{anchor}"
    return None


def where(path: Path, text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"{path.relative_to(REPO)}:{line}"


def link_problems(path: Path) -> list[str]:
    text = path.read_text()
    problems = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if EXTERNAL.match(target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        problem = target_problem(resolved, anchor or None)
        if problem:
            problems.append(f"{where(path, text, m.start())}: {m.group(0)}: {problem}")
    return problems


def mention_problems(path: Path) -> list[str]:
    text = path.read_text()
    problems = []
    for m in PATH_MENTION.finditer(text):
        name = Path(m.group(1))
        if made_by_the_user(name):
            continue
        problem = target_problem(REPO / name, m.group(2))
        if problem:
            problems.append(f"{where(path, text, m.start())}: {m.group(0)}: {problem}")
    return problems


def test_every_relative_link_leads_to_a_file_and_heading() -> None:
    markdown = [p for p in checked_files() if p.suffix == ".md"]
    assert REPO / "README.md" in markdown
    problems = [problem for p in markdown for problem in link_problems(p)]
    assert not problems, "\n".join(problems)


def linked_from(path: Path) -> set[Path]:
    """The files that ``path``'s relative Markdown links lead to."""
    targets = (m.group(1).partition("#")[0] for m in LINK.finditer(path.read_text()))
    return {(path.parent / t).resolve() for t in targets if t and not EXTERNAL.match(t)}


def test_the_readme_links_every_doc() -> None:
    pages = [p for p in checked_files() if p.suffix == ".md" and p.name != "README.md"]
    pages.append(REPO / "bench" / "README.md")
    assert REPO / "docs" / "api.md" in pages
    linked = linked_from(REPO / "README.md")
    missing = [p.relative_to(REPO).as_posix() for p in pages if p.resolve() not in linked]
    assert not missing, f"README.md links none of: {', '.join(missing)}"


def test_every_repo_path_the_docs_name_exists() -> None:
    files = checked_files()
    assert REPO / "Dockerfile" in files
    problems = [problem for p in files for problem in mention_problems(p)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("headings", "anchors"),
    [
        (["Run it in a container"], {"run-it-in-a-container"}),
        (["Events (source `budget`)"], {"events-source-budget"}),
        (
            ["Other senders: LiteLLM, AWS Budgets, Google Cloud Billing"],
            {"other-senders-litellm-aws-budgets-google-cloud-billing"},
        ),
        (
            ["Steps", "What it does", "Steps", "Steps"],
            {"steps", "what-it-does", "steps-1", "steps-2"},
        ),
        (["snake_case and kebab-case"], {"snake_case-and-kebab-case"}),
    ],
)
def test_anchors_follow_github(headings: list[str], anchors: set[str]) -> None:
    """Punctuation goes before spaces become dashes (`senders: LiteLLM` has one dash);
    repeated headings are numbered from 1."""
    assert slugs(headings) == anchors
