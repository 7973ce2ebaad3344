"""The docs a newcomer reads: a short README that starts with the two commands, pages that link up, and files
that speak of the product and its users, not of how or when it was built."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# The files describe the product as it is. Phrases that would point outside it (a numbered work item, a dated
# sitting) are assembled from parts here, so that this file does not contain them either.
_ITEM, _SITTING = "iss" + "ue", "ses" + "sion"
BUILD_TALK = re.compile(rf"\b{_ITEM}s? [0-9]|\b{_ITEM} #|\b{_SITTING} that|\b{_SITTING}s\b|\bafter" + "noon"
                        + rf"|this machine's {_SITTING}", re.IGNORECASE)
SCANNED = ("README.md", "docs", "benchmarks", "tests", "blipnb")
TEXT = {".md", ".py", ".sh", ".txt", ".yaml", ".yml", ".toml", ".mjs", ".js", ".json", ".cfg", ".ini"}
SKIPPED_DIRS = {"node_modules", "__pycache__", "screenshots", ".pytest_cache"}
README_MAX_LINES = 160


def scanned_files():
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            yield path
            continue
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.suffix in TEXT and not SKIPPED_DIRS & set(f.relative_to(ROOT).parts):
                if f != Path(__file__).resolve():  # this file spells out the phrases it looks for
                    yield f


def test_no_file_speaks_of_how_or_when_it_was_built():
    hits = []
    for f in scanned_files():
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if BUILD_TALK.search(line):
                hits.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert hits == [], "\n".join(hits)


def test_the_phrase_check_catches_what_it_should_and_spares_function_names():
    for bad in (f"scripts for {_ITEM} 5", f"see {_ITEM.title()} #3", f"The {_SITTING} that built these",
                f"over earlier {_SITTING}s", "three runs on one after" + "noon"):
        assert BUILD_TALK.search(bad), bad
    for fine in (f"meteor_{_SITTING}(scorer)", f"once per test {_SITTING}", "a tissue 5 cm wide"):
        assert not BUILD_TALK.search(fine), fine


def test_readme_is_short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    first_block = re.search(r"```[a-z]*\n(.*?)```", text, re.DOTALL).group(1)
    commands = [line.split("#", 1)[0].strip() for line in first_block.splitlines() if line.split("#", 1)[0].strip()]
    assert commands[:2] == ["make demo", "make test"]


def markdown_files():
    return [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "benchmarks" / "README.md",
            *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_and_headings_that_exist(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to missing {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: no heading #{anchor} in {linked.name}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"
