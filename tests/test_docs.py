"""The documentation's links work for a reader of the repository: every relative link in the
README and in docs/ leads to a file of the repository (never out of it, where a fresh clone
has nothing), and every link to a heading finds that heading."""

import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]

_FENCED_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.M | re.S)
# A code span never crosses a blank line; its content is shown, not parsed as links.
_CODE_SPAN = re.compile(r"(`+)((?:(?!\n[ \t]*\n).)+?)\1", re.S)
_INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]*)>?[^)]*\)")
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.M)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks, with code spans reduced to their content."""
    return _CODE_SPAN.sub(lambda span: span.group(2), _FENCED_BLOCK.sub("", markdown))


def _targets(document: Path) -> list[str]:
    prose = _CODE_SPAN.sub("code", _FENCED_BLOCK.sub("", document.read_text(encoding="utf-8")))
    return _INLINE_LINK.findall(prose) + _REFERENCE_DEFINITION.findall(prose)


def _local_targets(document: Path) -> list[str]:
    """Links to files or headings; web addresses (``https:``, ``mailto:``…) are left alone."""
    return [target for target in _targets(document) if target and not _SCHEME.match(target)]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lowercased, without punctuation, spaces as
    hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def _anchors(document: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_prose(document.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _resolve(document: Path, path: str) -> Path:
    """Where a link's path leads, as GitHub reads it: relative to the document, or to the
    repository's root when it starts with a slash."""
    base = REPOSITORY if path.startswith("/") else document.parent
    return (base / path.lstrip("/")).resolve()


def _name(document: Path) -> str:
    return str(document.relative_to(REPOSITORY))


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_no_link_leads_out_of_the_repository(document: Path) -> None:
    outside = [
        target
        for target in _local_targets(document)
        if target.partition("#")[0]
        and not _resolve(document, target.partition("#")[0]).is_relative_to(REPOSITORY)
    ]
    assert outside == [], f"{_name(document)} links outside the repository"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_every_relative_link_leads_to_a_file_of_the_repository(document: Path) -> None:
    missing = [
        target
        for target in _local_targets(document)
        if target.partition("#")[0] and not _resolve(document, target.partition("#")[0]).exists()
    ]
    assert missing == [], f"{_name(document)} links to files that do not exist"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_every_link_to_a_heading_finds_it(document: Path) -> None:
    broken = []
    for target in _local_targets(document):
        path, _, anchor = target.partition("#")
        linked = _resolve(document, path) if path else document
        checkable = anchor and linked.suffix == ".md" and linked.is_file()
        if checkable and anchor not in _anchors(linked):
            broken.append(target)
    assert broken == [], f"{_name(document)} links to headings that do not exist"


def test_the_readme_leads_to_the_api_guide() -> None:
    guides = [
        target
        for target in _local_targets(REPOSITORY / "README.md")
        if _resolve(REPOSITORY / "README.md", target.partition("#")[0])
        == REPOSITORY / "docs" / "api.md"
    ]
    assert guides, "README.md does not link to docs/api.md"
