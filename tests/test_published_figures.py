"""Every figure the documentation publishes comes from a committed run (issue 19, item 5).

README.md, docs/**/*.md and benchmarks/README.md are read block by block (paragraphs, list items
run together, tables; code is skipped). A block cites the JSON files of benchmarks/results/ that it
names (a link or a file name), or that an HTML comment right above it names:
``<!-- figures: budget-10m.json objects-10m.json -->``. Then:

- every number in a table's body, and every measured-looking figure in a paragraph (``1.26x``,
  ``450 MiB``, ``21.7 s``, ``0.62 img/s``, ``87.5 %``, ``0.7714``), must be in a cited JSON, rounded
  as written, or be the ratio of two figures quoted in the same paragraph or table row;
- a table with numbers, or a paragraph with such figures, that cites no JSON fails, unless marked
  ``<!-- settings -->`` (rules, defaults, targets: nothing measured) or ``<!-- external: source -->``
  (others' figures, as the U-Net paper's; also allowed on one table row).

Each cited JSON must say what it was measured on and how: the machine with torch's version, the
command, and the date (the allow-lists below name the files written before their script recorded
one, and fail once the file has it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGES = [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").rglob("*.md"))]

# Committed before benchmarks/common.py's publish() stamped the date; the commit's date stands in.
UNDATED = {
    "allocator-quiet.json", "budget-10m.json", "budget-3m-layout-before-after.json",
    "contention-demo-busy.json", "contention-demo-final-busy.json", "contention-demo-quiet-free-cores.json",
    "contention-demo-quiet.json", "contention-train-quiet-2.json", "contention-train-quiet-free-cores.json",
    "contention-train-quiet.json", "isbi2012-width16-120epochs-eval.json", "isbi2012-width16-120epochs.json",
    "isbi2012-width32-lr0.003-100epochs.json", "layout-cpu-classes-quiet.json", "objects-10m.json",
    "pipeline-cpu.json", "postprocess.json", "precision-pairs-fresh-cache.json",
    "precision-pairs-noamx-5pairs-layout.json", "precision-pairs-noamx-5pairs.json",
    "precision-pairs-warm-cache-768.json", "precision-pairs-warm-cache.json", "step-profile-avx512-bf16.json",
    "throughput-avx512-bf16-compile.json", "throughput-cpu-classes-busy.json", "throughput-cpu-classes-quiet.json",
    "throughput-cpu-compile.json", "throughput-cpu-run1.json", "throughput-cpu-run2.json", "volume-memory.json",
}  # fmt: skip
# Written as a bare list of rows (throughput.py) or before layout.py recorded its command; the
# command is quoted beside their figures. A rerun records it.
WITHOUT_COMMAND = {
    "layout-cpu-classes-quiet.json", "throughput-avx512-bf16-compile.json", "throughput-cpu-classes-busy.json",
    "throughput-cpu-classes-quiet.json", "throughput-cpu-compile.json", "throughput-cpu-run1.json",
    "throughput-cpu-run2.json",
}  # fmt: skip

MARKER = re.compile(r"^<!--\s*(figures|settings|external|skip-test)\b:?\s*(.*?)\s*-->$")
CITED_NAME = re.compile(r"[\w.-]+\.json")
NUMBER = r"\d+(?:\.\d+)?"
# Figures in prose: ratios, memory, seconds, rates, percentages, and bare numbers of 3+ decimals.
PROSE_FIGURE = re.compile(
    rf"(?<![\w.])(?:(?P<low>{NUMBER})\s*-\s*)?(?P<value>{NUMBER})"
    r"(?:(?P<unit>x|\s?(?:MiB|MB|GiB|GB)|\s?s|\s?(?:img|steps|req|batches)/s|\s?%)(?![\w/])|(?<=\.\d\d\d)(?!\w))"
)
TABLE_NUMBER = re.compile(rf"(?<![\w.])(?P<value>{NUMBER})(?P<percent>\s?%)?")


@dataclass
class Block:
    page: Path
    line: int
    lines: list[str]
    marker: tuple[str, str] | None = None
    cited: set[str] = field(default_factory=set)

    @property
    def is_table(self) -> bool:
        return all(line.lstrip().startswith("|") for line in self.lines)

    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's paragraphs and tables (fenced code left out), each with the marker above it."""
    found: list[Block] = []
    current: Block | None = None
    marker: tuple[str, str] | None = None
    fenced = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced, current = not fenced, None
            continue
        if fenced:
            continue
        if match := MARKER.match(stripped):
            marker, current = (match[1], match[2]), None
            continue
        if not stripped or stripped.startswith("#"):
            current = None
            continue
        if current is None:
            current = Block(page, number, [], marker)
            marker = None
            found.append(current)
        current.lines.append(line)
    for block in found:
        names = {name for line in block.lines for name in CITED_NAME.findall(line)}
        if block.marker and block.marker[0] == "figures":
            names |= set(block.marker[1].split())
        block.cited = names
    return found


def json_numbers(name: str) -> list[float]:
    """Every number in a result file: values, and numbers inside its strings and keys."""
    numbers: list[float] = []

    def walk(value) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, (int, float)):
            numbers.append(abs(float(value)))
        elif isinstance(value, str):
            numbers.extend(float(text) for text in re.findall(NUMBER, value))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(json.loads((RESULTS / name).read_text()))
    return numbers


def decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def rounds_to(value: float, text: str) -> bool:
    """``value`` written with as many decimals as ``text`` is ``text`` (rounding half up or to even)."""
    step = Decimal(1).scaleb(-decimals(text))
    written = Decimal(text)
    return any(Decimal(repr(value)).quantize(step, rounding) == written for rounding in (ROUND_HALF_UP, ROUND_HALF_EVEN))


def in_results(text: str, pool: list[float], percent: bool = False) -> bool:
    """``text`` is a number of the pool as written (a percentage also as a fraction)."""
    return any(rounds_to(v, text) or (percent and rounds_to(100 * v, text)) for v in pool)


def a_ratio_of(text: str, quoted: list[float], percent: bool = False) -> bool:
    """``text`` is a / b of two figures quoted beside it (for a percentage: 100 a / b or 100 (a / b - 1))."""
    tolerance = 0.6 * 10 ** -decimals(text)
    target = float(text)
    for a in quoted:
        for b in quoted:
            if a is b or not b:
                continue
            candidates = [100 * a / b, 100 * (a / b - 1)] if percent else [a / b]
            if any(abs(candidate - target) <= tolerance for candidate in candidates):
                return True
    return False


def plain(text: str) -> str:
    """Text without code spans, HTML comments, link targets and result file names (their digits are
    names, not figures)."""
    text = re.sub(r"<!--.*?-->", "", text)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return CITED_NAME.sub("", text)


def figures_of(block: Block) -> list[tuple[str, list[tuple[str, bool]], list[str]]]:
    """Per table row (or for the whole paragraph): its text, its figures (number, is a percentage)
    and every number quoted in it; empty for blocks marked settings or external."""
    if block.marker and block.marker[0] in ("settings", "external"):
        return []
    found = []
    for row in block.lines[2:] if block.is_table else [" ".join(block.lines)]:
        if block.is_table and "<!-- external" in row:
            continue
        text = plain(row)
        numbers = [match["value"] for match in TABLE_NUMBER.finditer(text)]
        if block.is_table:
            figures = [(match["value"], bool(match["percent"])) for match in TABLE_NUMBER.finditer(text)]
        else:
            figures = [(value, (match["unit"] or "").strip() == "%")
                       for match in PROSE_FIGURE.finditer(text) for value in (match["low"], match["value"]) if value]  # fmt: skip
        if figures:
            found.append((text, figures, numbers))
    return found


def problems_of(block: Block) -> list[str]:
    named = set(CITED_NAME.findall(re.sub(r"`[^`]*`", "", " ".join(block.lines))))
    named |= set(block.marker[1].split()) if block.marker and block.marker[0] == "figures" else set()
    problems = [f"{block.where()}: cites {name}, which is not in benchmarks/results/"
                for name in sorted(named) if not (RESULTS / name).exists()]  # fmt: skip
    cited = sorted(name for name in block.cited if (RESULTS / name).exists())
    pool = [number for name in cited for number in json_numbers(name)]
    for _, figures, numbers in figures_of(block):
        if not cited:
            kind = "table" if block.is_table else "paragraph"
            problems.append(f"{block.where()}: a {kind} with figures {[f for f, _ in figures][:5]} names no JSON of "
                            "benchmarks/results/ (mark it <!-- settings --> if nothing in it is measured)")  # fmt: skip
            continue
        quoted = [float(number) for number in numbers if in_results(number, pool)]
        for figure, percent in figures:
            if not (in_results(figure, pool, percent) or a_ratio_of(figure, quoted, percent)):
                problems.append(f"{block.where()}: {figure}{'%' if percent else ''} is in none of {cited}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_published_figure_is_in_the_json_it_cites(page: Path) -> None:
    problems = [problem for block in blocks(page) for problem in problems_of(block)]
    assert not problems, "\n".join(problems)


def cited_results() -> list[str]:
    """The result files that back a published figure."""
    return sorted({name for page in PAGES for block in blocks(page) if figures_of(block) for name in block.cited
                   if (RESULTS / name).exists()})  # fmt: skip


@pytest.mark.parametrize("name", cited_results())
def test_a_cited_result_says_where_when_and_how_it_was_measured(name: str) -> None:
    data = json.loads((RESULTS / name).read_text())
    records = data if isinstance(data, list) else [data, *data.get("rows", [])]
    machines = [r["machine"] for r in records if isinstance(r, dict) and "machine" in r]
    assert machines, f"{name}: no machine"
    assert all("torch" in m for m in machines) or isinstance(data, dict) and "torch" in data, f"{name}: no torch version"
    has_command = isinstance(data, dict) and bool(data.get("command"))
    has_date = isinstance(data, dict) and bool(data.get("date"))
    assert has_command or name in WITHOUT_COMMAND, f"{name}: no command"
    assert has_date or name in UNDATED, f"{name}: no date"
    assert not (has_command and name in WITHOUT_COMMAND), f"{name} records its command now: take it off WITHOUT_COMMAND"
    assert not (has_date and name in UNDATED), f"{name} records its date now: take it off UNDATED"


def check(markdown: str, tmp_path: Path) -> list[str]:
    page = tmp_path / "page.md"
    page.write_text(markdown)
    return [problem for block in blocks(page) for problem in problems_of(block)]


def test_the_check_fails_a_figure_with_no_json_or_not_in_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    assert check("Batching gave 1.52x the requests/s.\n", tmp_path)  # the serve_load figure
    assert check("Folding ran 1.29x as fast ([fold.json](benchmarks/results/fold.json)).\n", tmp_path)
    assert check("<!-- figures: budget-10m.json -->\n| dataset | Dice |\n|---|---|\n| isbi | 0.7715 |\n", tmp_path)
    assert check("Peak RSS rose by 30-50 % ([allocator-quiet.json](x)).\n", tmp_path)  # the JSON: +31 % to +66 %


def test_the_check_passes_figures_in_their_json_ratios_of_quoted_ones_and_marked_blocks(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    assert not check("<!-- figures: budget-10m.json -->\n| dataset | Dice |\n|---|---|\n| isbi | 0.7714 |\n", tmp_path)
    assert not check("Peak RSS 1183.98 against 900.7 MiB: 1.31x, +31 % ([allocator-quiet.json](x)).\n", tmp_path)
    assert not check("<!-- settings -->\nbfloat16 where it ran at least 1.05x as fast.\n", tmp_path)
    assert not check("| | error |\n|---|---|\n| paper <!-- external: Ronneberger 2015 --> | 0.0611 |\n", tmp_path)
    assert not check("```bash\nbenchmark --ratio 9.99x\n```\n", tmp_path)
