"""The documentation holds together: README.md and docs/*.md link only to files and headings that
exist, name no directory of one particular machine, and the README stays a front door (<= 250 lines).

Links are read outside code (fenced blocks and `inline code` are skipped, where a path is an example
to type, not a link to follow); http(s) and mailto links are not fetched. An #anchor is checked
against the target page's headings, slugged as GitHub does (lower case, punctuation dropped, spaces
to hyphens, a repeated heading gets -1, -2, ...).
"""
import os
import re
import unicodedata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PAGES = ["README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(DOCS) if name.endswith(".md"))

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|tmp)/")


def read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def prose_lines(text):
    """(line number, line) outside fenced code blocks, inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, INLINE_CODE.sub("", line)


def slug(heading):
    text = re.sub(r"[*`]|<[^>]+>", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page):
    seen, found = {}, set()
    fenced = False
    for line in read(page).splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6}\s", line):
            base = slug(line.lstrip("#"))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page):
    for number, line in prose_lines(read(page)):
        for match in LINK.finditer(line):
            yield number, match.group(1)


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page):
    broken = []
    for number, target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):       # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        if path.startswith("/"):
            broken.append(f"{page}:{number}: {target} (absolute: links must be relative)")
            continue
        resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path \
            else os.path.join(ROOT, page)
        if not os.path.exists(resolved):
            broken.append(f"{page}:{number}: {target} (no such file)")
        elif anchor and resolved.endswith(".md"):
            if anchor.lower() not in anchors(os.path.relpath(resolved, ROOT)):
                broken.append(f"{page}:{number}: {target} (no heading with that anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_links_and_headings():
    """Guards the checker itself: a page with links must yield them, and slugs follow GitHub's."""
    assert any(target for _, target in links("docs/index.md"))
    assert slug("Training: one loop, resume, several processes") == "training-one-loop-resume-several-processes"
    assert slug("`bash bench/gpu_check.sh`") == "bash-benchgpu_checksh"


@pytest.mark.parametrize("page", PAGES)
def test_no_path_of_a_particular_machine(page):
    found = [f"{page}:{number}: {line.strip()}"
             for number, line in enumerate(read(page).splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not found, ("a path of one machine (use a variable such as $OUT or a path inside the "
                       "repository):\n" + "\n".join(found))


def test_readme_is_a_front_door():
    lines = read("README.md").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; the depth belongs in docs/ (at most 250)"
