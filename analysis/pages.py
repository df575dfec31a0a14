"""`python -m analysis.pages`: keep the results pages (results/README.md, results/<experiment>/README.md) tied to
the committed tables they quote.

A page quotes a table in one of two ways:

- an include, a block that holds a generated table (a .md with its .csv beside it) word for word (a path relative
  to the page)::

      <!-- include: table1_ce.md -->
      ...the file's text...
      <!-- end include -->

  `--update` rewrites every block from its file; the check fails on a block that differs.
- a marker right after a number, naming a CSV table (relative to the page), its row and its column::

      62 400<!-- trials.csv[method=Baseline;seed=2] steps to grok -->

  The row is the one row whose cells equal every `column=value` (`;` between them); `column#k` takes the k-th
  number of a cell that holds several, such as "77,364 ± 6,716 (med 77,620)". The check fails unless the cell's
  value, rounded to the last digit the page writes, is the page's number. A marker after words quotes a cell
  without a number, such as an estimand's name, and the words must be that cell's text::

      ratio of geometric means<!-- table1_ce.csv[Method=Baseline (weight_decay=0.01)] steps_estimand -->

Numbers are read as the pages write them: thousands grouped by a space, a thin space or a comma ("62 400",
"77,364"), decimals, "1e-5" and "3·10⁻⁵", and powers written with superscripts ("10⁵", "2⁻⁵").
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"
SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
SUPER = "[⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+"
# A number not glued to a word, a path or another number: "table1_ce", "x1", "mnist_ce" and "1.2.3" hold none.
NUMBER = re.compile(
    rf"(?<![\w.·⁰¹²³⁴⁵⁶⁷⁸⁹⁻])(?<![A-Za-z_]-)"
    rf"(?P<sign>[-−](?=\d))?"
    rf"(?P<mantissa>\d{{1,3}}(?:[ \u2009\u202f,]\d{{3}})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?)"
    rf"(?P<exponent>e[-+]?\d+|·10{SUPER}|{SUPER})?"
    rf"(?!\w|\.\d)"
)
INCLUDE = re.compile(r"<!-- include: (?P<file>\S+) -->\n(?P<body>.*?)<!-- end include -->", re.S)
MARKER = re.compile(r"<!-- (?P<file>[\w./-]+\.csv)\[(?P<row>[^\]]*)\] (?P<column>.+?) -->")
# Text whose digits are names, not quantities: fenced code, code spans, link targets, HTML comments.
NOT_PROSE = re.compile(r"```.*?```|`[^`\n]*`|\]\([^)]*\)|<!--.*?-->|https?://\S+", re.S)


class PageError(ValueError):
    """A page that does not match the tables it quotes."""


@dataclass(frozen=True)
class Quoted:
    """A number as a page writes it: its value and the place of its last written digit."""

    value: float
    unit: float

    def matches(self, value: float) -> bool:
        return abs(value - self.value) <= self.unit / 2 * (1 + 1e-9) + 1e-12 * abs(value)


def parse_number(match: re.Match[str]) -> Quoted:
    """The value a NUMBER match writes, and half of its last digit's place as the rounding it allows."""
    mantissa = re.sub(r"[ \u2009\u202f,]", "", match["mantissa"])
    decimals = len(mantissa.partition(".")[2])
    sign = -1.0 if match["sign"] else 1.0
    exponent = match["exponent"] or ""
    if exponent.startswith("e"):
        scale = 10.0 ** int(exponent[1:])
    elif exponent.startswith("·10"):
        scale = 10.0 ** int(exponent[3:].translate(SUPERSCRIPTS))
    elif exponent:  # a power written with a superscript, "10⁵" or "2⁻⁵": exact
        return Quoted(sign * float(mantissa) ** int(exponent.translate(SUPERSCRIPTS)), 0.0)
    else:
        scale = 1.0
    return Quoted(sign * float(mantissa) * scale, 10.0**-decimals * scale)


def numbers(text: str) -> Iterator[re.Match[str]]:
    return NUMBER.finditer(text)


def blank(text: str, pattern: re.Pattern[str]) -> str:
    """The text with each match of pattern replaced by spaces, so positions stay where they were."""
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m[0]), text)


def pages(results: Path = RESULTS) -> list[Path]:
    return sorted(page for page in [results / "README.md", *results.glob("*/README.md")] if page.is_file())


def refresh_includes(page: Path) -> str:
    """The page's text with every include block holding its file as committed now."""
    text = page.read_text(encoding="utf-8")

    def body(match: re.Match[str]) -> str:
        source = page.parent / match["file"]
        if not source.is_file():
            raise PageError(f"{page}: include of {match['file']}, which does not exist")
        if not source.with_suffix(".csv").is_file():  # a hand-written file would carry its numbers past the check
            raise PageError(f"{page}: include of {match['file']}, which is no generated table (no .csv beside it)")
        content = source.read_text(encoding="utf-8")
        return f"<!-- include: {match['file']} -->\n{content.rstrip()}\n<!-- end include -->"

    return INCLUDE.sub(body, text)


def stale_includes(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    fresh = refresh_includes(page)
    stale = [
        a["file"]
        for a, b in zip(INCLUDE.finditer(text), INCLUDE.finditer(fresh), strict=True)
        if a["body"] != b["body"]
    ]
    return [
        f"{page}: the include of {name} differs from the file (python -m analysis.pages --update)" for name in stale
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def cell(page: Path, file: str, row: str, column: str) -> str:
    """The cell a marker names: the one row matching every condition, in that column (its "#k" left on)."""
    path = page.parent / file
    if not path.is_file():
        raise PageError(f"no table {file}")
    conditions = dict(part.strip().split("=", 1) for part in row.split(";") if part.strip())
    rows = [r for r in read_csv(path) if all(r.get(k) == v for k, v in conditions.items())]
    if len(rows) != 1:
        raise PageError(f"{file}[{row}] matches {len(rows)} rows, not one")
    name = column.partition("#")[0]
    if name not in rows[0]:
        raise PageError(f"{file} has no column {name!r}")
    return rows[0][name]


def cell_number(text: str, column: str) -> float:
    """The number a cell holds; "#k" in the column takes the k-th of several."""
    index = column.partition("#")[2]
    found = list(numbers(text))
    k = int(index or 1)
    if len(found) < k or (not index and len(found) != 1):
        raise PageError(f"{column}: {text!r} holds no single number there")
    return parse_number(found[k - 1]).value


def marker_error(page: Path, before: str, marker: re.Match[str]) -> str | None:
    """Why a marker's quote is not its cell, or None: a number must round to the cell's value, and words (a cell
    without a number, such as an estimand's name) must be the cell's text."""
    text = cell(page, marker["file"], marker["row"], marker["column"])
    if not any(numbers(text)) and "#" not in marker["column"]:
        return None if before.endswith(text) else f"the text before it is not {text!r}"
    quoted = list(NUMBER.finditer(before[-40:]))
    if not quoted or quoted[-1].end() != len(before[-40:]):
        return "it does not follow a number"
    value = cell_number(text, marker["column"])
    written = parse_number(quoted[-1])
    return None if written.matches(value) else f"{quoted[-1][0]} is {value:g} in {marker['file']}"


def marker_errors(page: Path) -> list[str]:
    """Each marked quote that is not its table's cell: a number rounded as the page writes it, or words."""
    text = page.read_text(encoding="utf-8")
    errors = []
    for marker in MARKER.finditer(text):
        line = text.count("\n", 0, marker.start()) + 1
        try:
            error = marker_error(page, text[: marker.start()], marker)
        except PageError as problem:
            error = str(problem)
        if error:
            errors.append(f"{page}:{line}: {error}: {marker[0]}")
    return errors


def unmarked_numbers(page: Path) -> list[tuple[int, int, str]]:
    """(start, end, text) of every number in the page's prose and tables that neither an include nor a marker
    accounts for."""
    text = page.read_text(encoding="utf-8")
    marked = {m.start() for m in MARKER.finditer(text)}
    prose = blank(blank(text, INCLUDE), NOT_PROSE)
    return [(m.start(), m.end(), m[0]) for m in numbers(prose) if m.end() not in marked]


def check(results: Path = RESULTS) -> list[str]:
    errors = []
    for page in pages(results):
        errors += stale_includes(page)
        errors += marker_errors(page)
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.pages", description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite every include block from its file")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.update:
            fresh = {page: refresh_includes(page) for page in pages(args.results)}  # every file read before any write
            for page, text in fresh.items():
                page.write_text(text, encoding="utf-8")
        errors = check(args.results)
    except PageError as error:
        print(error, file=sys.stderr)
        return 2
    for error in errors:
        print(error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
