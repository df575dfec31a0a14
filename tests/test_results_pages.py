"""The results pages quote no number that can drift from the data.

A "number" is what analysis.pages.NUMBER reads in a page's prose and hand-written tables: digits not glued to a
letter, an underscore, a dot or another number ("62 400", "77,364", "0.025", "1e-3", "3·10⁻⁵", "10⁵", "2⁻⁵"; not
the 1 of `table1_ce`, "x1" or "mnist_tune-1"). Digits in fenced code, `code spans`, link targets, URLs and HTML
comments are names, not quantities, and are not read. Every number must be one of:

- inside an include block (`<!-- include: FILE -->` … `<!-- end include -->`) that holds FILE word for word;
- followed by a marker (`<!-- table.csv[column=value;…] column -->`) whose cell, rounded to the digits the page
  writes, is that number;
- inside a phrase of tests/published_numbers.yaml, each entry naming its source (a paper's table or figure, or the
  sweep file a setting comes from). An entry that no page uses fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from analysis import pages

ALLOWED = Path(__file__).with_name("published_numbers.yaml")
RESULTS = pages.RESULTS


def allow_list() -> list[dict[str, str]]:
    entries = yaml.safe_load(ALLOWED.read_text(encoding="utf-8"))
    assert all(set(entry) == {"text", "source"} and entry["source"].strip() for entry in entries), ALLOWED
    return entries


def phrase(entry: dict[str, str]) -> re.Pattern[str]:
    """An entry's text, matched across a line break where the page wraps it."""
    return re.compile(r"\s+".join(map(re.escape, entry["text"].split())))


def prose(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    return pages.blank(pages.blank(text, pages.INCLUDE), pages.NOT_PROSE)


def unexplained(page: Path, entries: list[dict[str, str]]) -> list[str]:
    """The page's numbers that no include, marker or allow-list phrase accounts for."""
    text = prose(page)
    spans = [(m.start(), m.end()) for e in entries for m in phrase(e).finditer(text)]
    lines = page.read_text(encoding="utf-8")
    return [
        f"{page.relative_to(RESULTS.parent)}:{lines.count(chr(10), 0, start) + 1}: {number!r}"
        for start, end, number in pages.unmarked_numbers(page)
        if not any(a <= start and end <= b for a, b in spans)
    ]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- the committed pages ---


def test_every_experiment_has_a_page_that_the_index_links() -> None:
    index = (RESULTS / "README.md").read_text(encoding="utf-8")
    experiments = [d.name for d in RESULTS.iterdir() if d.is_dir() and d.name != "runs"]
    assert experiments
    for name in experiments:
        assert (RESULTS / name / "README.md").is_file(), name
        assert f"]({name}/README.md)" in index, name
    for archive in (RESULTS / "runs").glob("*.jsonl.gz"):
        assert f"](runs/{archive.name})" in index, archive.name


def test_includes_hold_their_files_word_for_word() -> None:
    assert [error for page in pages.pages() for error in pages.stale_includes(page)] == []


def test_marked_numbers_equal_their_tables() -> None:
    assert [error for page in pages.pages() for error in pages.marker_errors(page)] == []


def test_every_number_is_included_marked_or_published() -> None:
    entries = allow_list()
    assert [line for page in pages.pages() for line in unexplained(page, entries)] == []


def test_every_allow_list_entry_is_used() -> None:
    text = "\n".join(prose(page) for page in pages.pages())
    assert [entry["text"] for entry in allow_list() if not phrase(entry).search(text)] == []


# --- the checker itself, on pages made here ---

TABLE = 'Method,steps,cell,test\nBaseline,62400,"77,364 ± 6,716 (med 77,620)",\nGrokAlign,0.000433,×7.56,Welch t-test\n'


@pytest.mark.parametrize(
    ("written", "value", "unit"),
    [
        ("62 400", 62400.0, 1.0),
        ("77,364", 77364.0, 1.0),
        ("0.0031", 0.0031, 1e-4),
        ("4.3e-19", 4.3e-19, 1e-20),
        ("3·10⁻⁵", 3e-5, 1e-5),
        ("10⁵", 1e5, 0.0),
        ("2⁻⁵", 1 / 32, 0.0),
        ("−0.0354", -0.0354, 1e-4),
    ],
)
def test_numbers_are_read_as_written(written: str, value: float, unit: float) -> None:
    (match,) = pages.numbers(f"at {written} here")
    quoted = pages.parse_number(match)
    assert quoted.value == pytest.approx(value) and quoted.unit == pytest.approx(unit)


def test_names_hold_no_numbers() -> None:
    assert [m[0] for m in pages.numbers("table1_ce x1 mnist_tune-1 v0.1.0 and 3/3 at 0–4")] == ["3", "3", "0", "4"]


def test_a_marked_number_that_is_not_its_cell_fails(tmp_path: Path) -> None:
    write(tmp_path, "t/table.csv", TABLE)
    good = "62 400<!-- table.csv[Method=Baseline] steps --> and 77 620<!-- table.csv[Method=Baseline] cell#3 -->"
    good += " and 0.0004<!-- table.csv[Method=GrokAlign] steps -->"
    assert pages.marker_errors(write(tmp_path, "t/README.md", good)) == []
    bad = write(tmp_path, "t/README.md", "62 500<!-- table.csv[Method=Baseline] steps -->")
    assert pages.marker_errors(bad) == [
        f"{bad}:1: 62 500 is 62400 in table.csv: <!-- table.csv[Method=Baseline] steps -->"
    ]
    astray = write(tmp_path, "t/README.md", "see 62 400 <!-- table.csv[Method=Baseline] steps -->")
    assert pages.marker_errors(astray) == [
        f"{astray}:1: it does not follow a number: <!-- table.csv[Method=Baseline] steps -->"
    ]
    rounded = write(tmp_path, "t/README.md", "0.00044<!-- table.csv[Method=GrokAlign] steps -->")
    assert len(pages.marker_errors(rounded)) == 1


def test_a_marked_label_must_be_its_cell(tmp_path: Path) -> None:
    """The modmul page once called a Welch test on log values a "log-normal AFT (lifelines, Wald p)"."""
    write(tmp_path, "t/table.csv", TABLE)
    good = write(tmp_path, "t/README.md", "p of a Welch t-test<!-- table.csv[Method=GrokAlign] test -->")
    assert pages.marker_errors(good) == []
    bad = write(tmp_path, "t/README.md", "Wald p of a log-normal AFT<!-- table.csv[Method=GrokAlign] test -->")
    assert pages.marker_errors(bad) == [
        f"{bad}:1: the text before it is not 'Welch t-test': <!-- table.csv[Method=GrokAlign] test -->"
    ]


def test_a_marker_naming_no_single_row_or_number_fails(tmp_path: Path) -> None:
    write(tmp_path, "t/table.csv", TABLE)
    page = write(tmp_path, "t/README.md", "1<!-- table.csv[Method=Nope] steps --> 2<!-- table.csv[] cell -->")
    errors = pages.marker_errors(page)
    assert "matches 0 rows" in errors[0] and "matches 2 rows" in errors[1]


def test_a_stray_number_is_found_and_names_are_not(tmp_path: Path) -> None:
    text = "Seed 3 grokked at 62 400<!-- t.csv[a=b] c -->, see `table_2.md` and [x](../runs/m2.jsonl.gz).\n"
    text += "```bash\ngrokbench sweep mnist --seeds 0,1,2\n```\n<!-- include: f.md -->\n| 5 |\n<!-- end include -->\n"
    page = write(tmp_path, "t/README.md", text)
    assert [number for _, _, number in pages.unmarked_numbers(page)] == ["3"]


def test_update_rewrites_a_stale_include_and_the_check_then_passes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write(results, "e/t.md", "| a |\n| 1 |\n")
    write(results, "e/t.csv", "a\n1\n")
    page = write(results, "e/README.md", "<!-- include: t.md -->\nold\n<!-- end include -->\n")
    write(results, "README.md", "index\n")
    assert pages.stale_includes(page) != []
    assert pages.main(["--results", str(results)]) == 1
    assert pages.main(["--update", "--results", str(results)]) == 0
    assert page.read_text(encoding="utf-8") == "<!-- include: t.md -->\n| a |\n| 1 |\n<!-- end include -->\n"


def test_an_include_of_a_missing_file_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    first = write(results, "a/README.md", "<!-- include: t.md -->\nold\n<!-- end include -->\n")
    write(results, "a/t.md", "new\n")
    write(results, "a/t.csv", "new\n")
    write(results, "b/README.md", "<!-- include: gone.md -->\nx\n<!-- end include -->\n")
    write(results, "README.md", "index\n")
    assert pages.main(["--update", "--results", str(results)]) == 2
    assert "old" in first.read_text(encoding="utf-8")


def test_an_include_of_a_hand_written_file_is_refused(tmp_path: Path) -> None:
    """Only a generated table (its .csv beside it) may be included: the numbers of a hand-written file would escape
    the check."""
    results = tmp_path / "results"
    write(results, "a/notes.md", "grokked at 12 840\n")
    write(results, "a/README.md", "<!-- include: notes.md -->\ngrokked at 12 840\n<!-- end include -->\n")
    write(results, "README.md", "index\n")
    assert pages.main(["--results", str(results)]) == 2
