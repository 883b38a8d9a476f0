"""The book cannot contradict itself: chapter prose quotes the computation.

Every number in a chapter's markdown is glued from the notebook (``{glue:text}`name``` with
``ch.plotting.glue`` in a code cell), except a short, explicit allow-list: facts about the real
Geneformer (FACTS.md), years, chapter/section/exercise numbers, minutes in the objectives box,
list markers. Every glue key the prose quotes must be glued by the same notebook, and every
chapter has hidden claim checks (``remove-cell`` cells with ``assert``), so a run whose outputs
stop supporting the text fails the build.

Chapters not converted yet are listed in ``UNCONVERTED``; the list only shrinks (a listed chapter
that has become clean fails, so it must be removed from the list).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Chapters still being converted (remove an entry as soon as its chapter passes).
UNCONVERTED: set[str] = set()

# What may be typed. Each entry: (regex of the allowed span, why it need not be computed).
ALLOWED = [
    (r"^\s*\d+\.\s", "ordered-list marker"),
    (r"\b(?:19[5-9]\d|20[0-2]\d)\b", "a year"),
    ((r"\b(?:[Cc]hapters?|[Ss]ections?|§|[Ee]xercises?|[Ss]teps?|[Pp]arts?)\s*\d+"
     r"(?:\s*(?:[–-]|,|and|or|to)\s*\d+)*"), "a chapter / section / exercise / step number"),
    (r"\b\d+(?:\s*[–-]\s*\d+)?\s*min\b", "minutes in the objectives box or a section's timing"),
    (r"\b2 × 2\b", "the name of the 2 × 2 interaction design"),
    (r"(?<![\w.,])[01](?![\w]|[.,]\d)", "0 and 1 as definitions (a ratio of 1 is random, rank 0 = top)"),
    # Facts about the real Geneformer (FACTS.md), typed on purpose:
    (r"\b2,048\b", "V1 input size (FACTS.md)"),
    (r"\b4,09[46]\b", "V2 input size / genes (FACTS.md)"),
    (r"\b25,42[4-6]\b", "V1 vocabulary and its largest token id (FACTS.md)"),
    (r"\b(?:[Vv]ersions?|release)\s+\d+(?:\.\d+)*", "a library version"),
    (r"\b20,275\b", "V2 vocabulary (FACTS.md)"),
    (r"\b15 ?%", "share of genes masked in pretraining (FACTS.md)"),
    (r"~?\b(?:29\.9|30|104) ?M\b", "pretraining corpus sizes, cells (FACTS.md)"),
    (r"\b10,000\b", "the tokenizer's per-10,000 scaling (FACTS.md)"),
    (r"\b(?:10|40) M parameters\b", "V1-10M / 12-layer V1 sizes (FACTS.md)"),
    (r"\b86 M parameters\b|~?\b(?:29,541|30,333|27,494|29,926|30,000)\b",
     "myths of the seed tutorial, quoted to correct them (FACTS.md)"),
    (r"\b(?:6|12|18) layers\b", "V1 / V2 layer counts (FACTS.md)"),
    (r"\b(?:4|8|12|18) heads\b", "V1 / V2 head counts (FACTS.md)"),
    (r"\bhidden (?:size )?(?:256|512|768|1,152)\b", "V1 / V2 hidden sizes (FACTS.md)"),
    (r"\b(?:feed-forward|intermediate) (?:size )?(?:512|3,072)\b", "V1 / V2 intermediate sizes (FACTS.md)"),
]
_ALLOWED_RE = re.compile("|".join(f"(?:{a})" for a, _ in ALLOWED), re.MULTILINE)

# A typed number: integers, decimals, thousands separators, exponents, percentages, with or
# without a sign; not part of a word or an identifier (V1, log1p, gf-6L-30M).
NUMBER = re.compile(r"(?:(?<![\w.])[−-])?(?<![\w./])\d(?:[\d,]*\d)?(?:\.\d+)?(?:[eE][−-]?\d+)?(?: ?%|st|nd|rd|th)?"
                    r"(?![\w])")
# The before-stop hook's detector (decimals and percentages): NUMBER must find all of these.
HOOK = re.compile(r"(?<![\w.])\d[\d,]*\.\d+(?![\w.])|(?<![\w.])\d+(\.\d+)? ?%")

GLUE_ROLE = re.compile(r"\{glue(?::text|:md|:any|:)?\}`([^`:]+)(?::[^`]*)?`")
GLUE_DEF = re.compile(r"\b(?:glue|verdict)\(\s*[\"']([A-Za-z0-9_]+)[\"']")
# Internal notes and LaTeX that must not reach a page.
FORBIDDEN = [r"\bFACTS\b", r"\\texttt", r"/tmp/", r"ipykernel_"]


def prose(md: str) -> str:
    """Markdown without what is not prose: code, roles, math, links, HTML comments, directives."""
    s = re.sub(r"<!--.*?-->", " ", md, flags=re.DOTALL)
    # fenced code: a fence whose info string is not a {directive} (directives hold prose)
    s = re.sub(r"^(`{3,}|~{3,})(?![`~])(?!\s*\{)[^\n]*\n.*?^\1\s*$", " ", s,
               flags=re.DOTALL | re.MULTILINE)
    s = re.sub(r"^\s*(`{3,})\s*\{[^}]*\}.*$", " ", s, flags=re.MULTILINE)  # directive openers
    s = re.sub(r"^\s*`{3,}\s*$", " ", s, flags=re.MULTILINE)  # directive closers
    s = re.sub(r"^:[\w-]+:.*$", " ", s, flags=re.MULTILINE)  # directive options (:label:, :class:)
    s = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", s)  # roles: glue, cite, ref, numref, doc, eq ...
    s = re.sub(r"`[^`]*`", " ", s)  # inline code
    s = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$", " ", s, flags=re.DOTALL)  # math
    s = re.sub(r"\]\([^)]*\)", "]", s)  # link targets
    s = re.sub(r"^(#+\s*)\d+(?:\.\d+)*\.?", r"\1", s, flags=re.MULTILINE)  # section numbers in headings
    return s


def typed_numbers(md: str) -> list[tuple[str, str]]:
    """(number, context) for each number in ``md``'s prose that is neither glued nor allowed."""
    s = _ALLOWED_RE.sub(" ", prose(md))
    return [(m.group(0), s[max(0, m.start() - 40): m.end() + 15].replace("\n", " ").strip())
            for m in NUMBER.finditer(s)]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(str(node["file"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    return found


def toc_chapters() -> list[str]:
    return [f for f in toc_files() if (ROOT / f"{f}.ipynb").is_file()]


def cells(chapter: str) -> list[dict]:
    nb = json.loads((ROOT / f"{chapter}.ipynb").read_text())
    return [dict(c, text="".join(c["source"]), tags=c.get("metadata", {}).get("tags", []))
            for c in nb["cells"]]



# -- the detector itself --------------------------------------------------------------------

def test_detector_flags_typed_numbers_and_spares_glued_and_allowed():
    md = ("The driver ranks 5th? No: it ranks 5 of 2,000 genes, AUPRC 0.89, 12 % of the gap, "
          "FDR 1e-3, shift −0.02, the top-10 list.\n"
          "Glued: {glue:text}`n_genes` genes, {glue:text}`auprc:.2f`; `n_genes=100` in code.\n"
          "Allowed: chapter 3, sections 4 and 5, 2023, 45 min, V1 has 2,048 inputs and 6 layers; "
          "a ratio of 1 is random; log1p, V2-104M.\n"
          "1. a list item\n```python\nx = 3.14\n```\n$\\alpha = 0.5$\n"
          "````{exercise}\n:label: ch7-ex-1\nInside a directive: 7 cells.\n```\ny = 2.5\n```\n````")
    found = [n for n, _ in typed_numbers(md)]
    assert found == ["5th", "5", "2,000", "0.89", "12 %", "1e-3", "−0.02", "10", "7"], found


def test_detector_catches_everything_the_hook_catches():
    samples = ["gap 0.25 closed", "AUPRC 1.51", "12 % of cells", "3.5%", "1,234.5 genes",
               "ratio 0.99, 0.98 and 0.89"]
    for s in samples:
        mine = [m.span() for m in NUMBER.finditer(s)]
        for m in HOOK.finditer(s):
            assert any(a <= m.start() < b for a, b in mine), (s, m.group(0))


def test_glue_helper_returns_the_text_outside_a_kernel():
    import numpy as np

    from course_helpers.plotting import glue, verdict

    assert glue("x", np.float64(0.12345), ".1%") == "12.3%"
    assert glue("n", np.int64(2000), ",d") == "2,000"
    assert glue("s", "higher") == "higher"
    assert verdict("v", np.float64(0.9) > 0.5, "beats", "trails") is True
    from course_helpers import CourseInputError

    with pytest.raises(CourseInputError, match="glue name"):
        glue("bad name:.2f", 1.0)


# -- the chapters -----------------------------------------------------------------------------

def problems(chapter: str) -> list[str]:
    """Everything that lets the chapter's prose drift from its outputs."""
    cs = cells(chapter)
    md = [(i, c["text"]) for i, c in enumerate(cs) if c["cell_type"] == "markdown"]
    found = [f"cell {i}: typed number {n!r} in ...{ctx}... (glue it: ch.plotting.glue + "
             "{glue:text}`name`; a fact about the real Geneformer goes to ALLOWED)"
             for i, text in md for n, ctx in typed_numbers(text)]
    used = {k for _, text in md for k in GLUE_ROLE.findall(text)}
    glued = [k for c in cs if c["cell_type"] == "code" for k in GLUE_DEF.findall(c["text"])]
    defined = set(glued)
    found += [f"glue key {k!r} is glued more than once (the book build warns and fails)"
              for k in sorted(defined) if glued.count(k) > 1]
    if not used:
        found.append("the prose quotes no computed value ({glue:text}`name`)")
    found += [f"the prose quotes glue key {k!r}, which no code cell glues"
              for k in sorted(used - defined)]
    if not any(c["cell_type"] == "code" and "remove-cell" in c["tags"]
               and re.search(r"^\s*assert\b", c["text"], re.MULTILINE) for c in cs):
        found.append("no hidden claim checks (code cells tagged remove-cell with an assert)")
    found += [f"cell {i}: internal note or LaTeX on the page ({p!r})"
              for i, text in md for p in FORBIDDEN if re.search(p, text)]
    return found


def test_unconverted_chapters_exist():
    stale = sorted(c for c in UNCONVERTED if not (ROOT / f"{c}.ipynb").is_file())
    assert not stale, f"UNCONVERTED names chapters that do not exist: {stale}"


@pytest.mark.parametrize("chapter", toc_chapters())
def test_chapter_prose_quotes_the_computation(chapter):
    found = problems(chapter)
    if chapter in UNCONVERTED:
        assert found, f"{chapter} passes every prose check: remove it from UNCONVERTED"
        return
    assert not found, f"{chapter}:\n" + "\n".join(found)


# -- the reference pages ------------------------------------------------------------------------

# Glossary terms that chapters use in another form (regex, case-insensitive).
GLOSSARY_ALIASES = {
    "Attention weight": r"attention weight|weight-based",
    "Dictionary": r"dictionar",
    "State contrast (attention)": r"state.contrast",
    "emb_layer": r"emb_layer|layer=-1",
    "Enrichment (attention)": r"enrichment",
    "Gene median": r"median",
    "In-silico induction": r"induction",
    "In-silico perturbation": r"in.silico (?:perturb|delet|treat)|in_silico_perturb",
    "Interaction (2 × 2)": r"interaction",
    "Null distribution": r"\bnull\b",
    "Soft-thresholding power": r"soft.threshold|soft power",
    "State shift": r"\bshift",
    "Donor effect": r"donor",
}


def chapter_text(number: int) -> str | None:
    paths = sorted(ROOT.glob(f"book/{number:02d}_*.ipynb"))
    if not paths:
        return None
    nb = json.loads(paths[0].read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"])


def glossary_entries() -> list[tuple[str, str]]:
    body = (ROOT / "book/glossary.md").read_text().split("```{glossary}")[1].split("\n```")[0]
    entries = re.split(r"\n(?=\S)", body.strip())
    return [(e.split("\n")[0].strip(), " ".join(e.split("\n")[1:])) for e in entries
            if e.strip() and not e.startswith(":")]


def test_glossary_points_to_chapters_that_use_the_term():
    bad = []
    for term, text in glossary_entries():
        refs = re.findall(r"chapters? ((?:\d+(?:,\s*|\s+and\s+)?)+)", text)
        words = re.sub(r"\s*\(.*\)", "", term).split()
        pattern = GLOSSARY_ALIASES.get(term, r"\s+".join(map(re.escape, words)))
        for n in sorted({int(x) for r in refs for x in re.findall(r"\d+", r)}):
            body = chapter_text(n)
            if body is not None and not re.search(pattern, body, re.IGNORECASE):
                bad.append(f"{term!r} points to chapter {n}, which does not use it")
    assert not bad, "\n".join(bad)


def test_instructor_guide_matches_the_chapters():
    guide = (ROOT / "book/instructors.md").read_text()
    checks = {int(n): set(re.findall(r"`(check_\w+)`", row))
              for n, row in re.findall(r"^\| (\d+) \| (.*)\|$", guide, re.MULTILINE)}
    times = {int(n): (int(t), int(e)) for n, t, e in
             re.findall(r"^\| (\d+)\. [^|]+\| (\d+) min \| (\d+) min \|", guide, re.MULTILINE)}
    for chapter in toc_chapters():
        n = int(Path(chapter).name[:2])
        text = chapter_text(n)
        used = set(re.findall(r"ch\.exercises\.(check_\w+)", text))
        assert checks.get(n) == used, (f"instructor guide, check table, chapter {n}: "
                                       f"{sorted(checks.get(n, ()))} but the chapter uses {sorted(used)}")
        box = re.search(r"\*\*Time:\*\*\s*(\d+)\s+min\s+teaching,\s*(\d+)\s+min\s+exercises", text)
        assert box, f"{chapter}: no '**Time:** N min teaching, M min exercises' in its objectives"
        assert times.get(n) == (int(box[1]), int(box[2])), (
            f"instructor guide, chapter times, chapter {n}: {times.get(n)} but the chapter says "
            f"{box[1]} + {box[2]} min")


def test_bibliography_has_no_latex_markup():
    bib = (ROOT / "book/references.bib").read_text()
    assert "\\texttt" not in bib and "\\emph" not in bib, "LaTeX markup shows up on the HTML page"
