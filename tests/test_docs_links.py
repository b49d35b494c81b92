"""Every relative link in the repository's Markdown resolves inside the repository.

A fresh clone is all a reader has: a link to a file that is not committed, to a heading that was
renamed, or to a folder beside the checkout (``../something``) is a dead end there. So for every
Markdown file git would ship (tracked, or new and not ignored), every link and image target that is
not an absolute ``http(s)`` URL must name a file or folder git would ship too, and a ``#fragment``
must name a heading of the target Markdown file, slugged the way GitHub renders it.

The checker is plain functions, so the first tests below feed it broken Markdown and see it fail.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

REPO = Path(__file__).resolve().parent.parent

# Inline links and images: [text](target "title") / ![alt](target). The text may hold one level of
# brackets (an image inside a link); the target may be wrapped in <...>.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+[\"'(][^)]*)?\s*\)")
# Reference definitions: [label]: target
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
ALLOWED_SCHEMES = ("http:", "https:")


@dataclass(frozen=True)
class Problem:
    """One bad link: the Markdown file (relative to the root), its line, the target, and why."""

    source: str
    line: int
    target: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.target}: {self.reason}"


def prose_lines(text: str, *, blank_code: bool = True) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` outside fenced code blocks; inline code spans blanked out unless
    ``blank_code`` is false (a heading's code span is part of its anchor)."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and set(line.strip()) == {fence[0]}:
                fence = None
            continue
        yield number, CODE_SPAN.sub(lambda match: " " * len(match.group(0)), line) if blank_code else line


def link_targets(text: str) -> Iterator[tuple[int, str]]:
    """``(line number, target)`` of every inline link, image and reference definition."""
    for number, line in prose_lines(text):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            yield number, definition.group(1).strip("<>")
            continue
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1).strip("<>")


def heading_texts(text: str) -> Iterator[str]:
    """The text of every ATX (``## Title``) and setext (``Title`` over ``===``) heading."""
    previous: str | None = None
    for _, line in prose_lines(text, blank_code=False):
        atx = ATX_HEADING.match(line)
        if atx:
            yield atx.group(2) or ""
            previous = None
            continue
        if previous and SETEXT_UNDERLINE.match(line):
            yield previous.strip()
            previous = None
            continue
        previous = line if line.strip() else None


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower-cased, punctuation dropped,
    each space a hyphen (github-slugger's rule; hyphens and underscores stay)."""
    rendered = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    rendered = re.sub(r"<[^>]+>", "", rendered)  # inline HTML tags
    kept = []
    for char in rendered.lower():
        if char in " -_" or char.isalnum() or unicodedata.category(char).startswith("M"):
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; repeated headings get ``-1``, ``-2``... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in heading_texts(text):
        slug = github_slug(heading)
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        else:
            seen[slug] = 0
        result.add(slug)
    return result


def shipped_paths(root: Path) -> set[str]:
    """Files git would put in a commit (tracked, or untracked and not ignored), and their folders."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    files = {name for name in listed.split("\0") if name and (root / name).exists()}
    folders = {str(parent) for name in files for parent in PurePosixPath(name).parents if str(parent) != "."}
    return files | folders


def check_markdown(root: Path, sources: Iterable[str], shipped: set[str]) -> list[Problem]:
    """Problems of the links in ``sources`` (Markdown paths relative to ``root``)."""
    problems: list[Problem] = []
    anchor_cache: dict[str, set[str]] = {}

    def anchors_of(name: str) -> set[str]:
        if name not in anchor_cache:
            anchor_cache[name] = anchors((root / name).read_text(encoding="utf-8"))
        return anchor_cache[name]

    for source in sorted(sources):
        text = (root / source).read_text(encoding="utf-8")
        for line, target in link_targets(text):
            if SCHEME.match(target):
                if not target.lower().startswith(ALLOWED_SCHEMES):
                    problems.append(Problem(source, line, target, "only http(s) URLs may be absolute"))
                continue
            path_part, _, fragment = target.partition("#")
            if path_part.startswith("/"):
                problems.append(Problem(source, line, target, "use a path relative to this file, not to a site root"))
                continue
            if path_part:
                joined = PurePosixPath(source).parent / unquote(path_part.split("?")[0])
                parts: list[str] = []
                for part in joined.parts:
                    if part == "..":
                        if not parts:
                            parts = [".."]
                            break
                        parts.pop()
                    elif part != ".":
                        parts.append(part)
                if parts[:1] == [".."]:
                    problems.append(Problem(source, line, target, "points outside the repository"))
                    continue
                resolved = "/".join(parts)
                if resolved and resolved not in shipped:
                    problems.append(Problem(source, line, target, f"{resolved} is not in the repository"))
                    continue
            else:
                resolved = source
            if fragment and resolved.endswith(".md") and unquote(fragment).lower() not in anchors_of(resolved):
                problems.append(Problem(source, line, target, f"no heading #{fragment} in {resolved}"))
    return problems


# --- the checker catches what it must -------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> set[str]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    shipped = set(files)
    return shipped | {str(parent) for name in files for parent in PurePosixPath(name).parents if str(parent) != "."}


def test_broken_links_are_reported(tmp_path: Path) -> None:
    shipped = _write(
        tmp_path,
        {
            "README.md": (
                "# Top\n\n"
                "[missing](docs/missing.md) [outside](../shared/notes.md) [rooted](/docs/guide.md)\n"
                "[bad anchor](docs/guide.md#no-such-heading) ![image](docs/gone.png)\n"
                "[ftp](ftp://example.org/file)\n"
                "[ref]: docs/also-missing.md\n"
            ),
            "docs/guide.md": "# Guide\n\nBack to [the top](../README.md#top) and [here](#guide).\n",
        },
    )
    problems = check_markdown(tmp_path, ["README.md", "docs/guide.md"], shipped)
    reported = {(problem.source, problem.target) for problem in problems}
    assert reported == {
        ("README.md", "docs/missing.md"),
        ("README.md", "../shared/notes.md"),
        ("README.md", "/docs/guide.md"),
        ("README.md", "docs/guide.md#no-such-heading"),
        ("README.md", "docs/gone.png"),
        ("README.md", "ftp://example.org/file"),
        ("README.md", "docs/also-missing.md"),
    }


def test_good_links_code_and_urls_pass(tmp_path: Path) -> None:
    shipped = _write(
        tmp_path,
        {
            "README.md": (
                "# The control room\n\n"
                "## Running under load: supervision, health and lags\n\n"
                "## `ingest.py`: the API — fast\n\n"
                "See [load](#running-under-load-supervision-health-and-lags), "
                "[ingest](#ingestpy-the-api--fast), [docs](docs/), [a URL](https://example.org/x.md),\n"
                '`[not a link](nowhere.md)` and [the guide](docs/guide.md#setup-step-by-step "title").\n\n'
                "```markdown\n[inside a fence](nowhere.md)\n```\n"
            ),
            "docs/guide.md": "Setup, step by step\n===\n\n## Setup, step by step\n\n[twice](#setup-step-by-step-1)\n",
        },
    )
    assert check_markdown(tmp_path, ["README.md", "docs/guide.md"], shipped) == []


def test_github_slugs() -> None:
    assert github_slug("The two commands") == "the-two-commands"
    assert github_slug("`bench/predict.py`: what compensation costs") == "benchpredictpy-what-compensation-costs"
    assert (
        github_slug("Models served elsewhere: external deployments") == "models-served-elsewhere-external-deployments"
    )
    assert github_slug("Slow loop: retraining, gates, promotion and rollback") == (
        "slow-loop-retraining-gates-promotion-and-rollback"
    )


# --- the repository's own Markdown ---------------------------------------------------------------


def test_every_relative_link_in_the_repository_resolves() -> None:
    shipped = shipped_paths(REPO)
    sources = [name for name in shipped if name.endswith(".md") and "node_modules" not in PurePosixPath(name).parts]
    assert "README.md" in sources
    problems = check_markdown(REPO, sources, shipped)
    assert not problems, "broken links:\n" + "\n".join(str(problem) for problem in problems)


def test_the_front_page_stays_short() -> None:
    # The README is the front page: about two screens; the rest lives in docs/ and bench/README.md.
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 150, f"README.md has {lines} lines; move detail into docs/"
