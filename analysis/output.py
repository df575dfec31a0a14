"""The analysis commands' output: a table as data, written as Markdown, LaTeX and CSV, printed, and logged to
MLflow as an analysis run; and the commands' shared handling of `--format` and of their errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.runs import AnalysisError
from grokbench.sweep.errors import SweepError
from grokbench.sweep.mlflow_store import TrackingStore, store_errors

FORMATS = ("md", "tex", "csv")
PACKAGE = Path(__file__).resolve().parent
BUILD = Path("build") / "analysis"  # git-ignored: where the files go unless told otherwise
RESULTS = Path("results")  # the committed tables, written only with --update-results (or --out)
log = logging.getLogger(f"grokbench.{__name__}")


@dataclass
class Table:
    name: str
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)  # per row, machine-readable columns added to the CSV
    printed: bool = True  # long tables are only written to --out


def to_markdown(t: Table) -> str:
    lines = [f"### {t.title}", "", "| " + " | ".join(t.headers) + " |", "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(r) + " |" for r in t.rows]
    lines += [""] + [f"*{n}*" for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


def _tex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("±", r"$\pm$"),
        ("×", r"$\times$"),
        ("÷", r"$\div$"),
        ("≥", r"$\geq$"),
        ("≤", r"$\leq$"),
        ("λ", r"$\lambda$"),
        (">", r"$>$"),
        ("α", r"$\alpha$"),
        ("†", r"$^\dagger$"),
        ("—", "--"),
        ("–", "--"),
    ):
        text = text.replace(a, b)
    return text


def to_latex(t: Table) -> str:
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex_escape(t.title)}}}",
        r"\begin{tabular}{" + "l" * len(t.headers) + "}",
        r"\toprule",
        " & ".join(_tex_escape(h) for h in t.headers) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex_escape(c) for c in r) + r" \\" for r in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\smallskip{\footnotesize " + _tex_escape(n) + "}" for n in t.notes]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_frame(t: Table) -> pd.DataFrame:
    """The table as shown, then its statistics as columns of their own (ratio, interval, p, test, estimand …)."""
    shown = pd.DataFrame(t.rows, columns=t.headers)
    # convert_dtypes: counts stay whole numbers beside the blank cells of the baseline row
    return pd.concat([shown, pd.DataFrame(t.stats).convert_dtypes()], axis=1) if t.stats else shown


def write(tables: list[Table], out: Path, formats: Sequence[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for t in tables:
        for f in formats:
            path = out / f"{t.name}.{f}"
            if f == "md":
                path.write_text(to_markdown(t))
            elif f == "tex":
                path.write_text(to_latex(t))
            else:
                to_frame(t).to_csv(path, index=False, float_format="%.6g")  # an AFT fit's last digits vary run to run
            written.append(path)
    return written


def show_and_write(tables: list[Table], out: Path, formats: Sequence[str]) -> list[Path]:
    """Print the tables (a long one only by name) and write every one in every format to `out`."""
    for t in tables:
        print(to_markdown(t) if t.printed else f"### {t.title}: {len(t.rows)} rows in {out / t.name}.*\n")
    return write(tables, out, formats)


def log_analysis_run(uri: str, experiments: list[str], sweep: str | None, files: list[Path]) -> None:
    """The tables and figures as artifacts of one MLflow run in the first experiment read, where a user of the UI
    finds them; a store that refuses it gets a warning (the files are written already)."""
    store = TrackingStore(uri)
    tags = {"grokbench.analysis.experiments": ",".join(experiments)}
    if sweep:
        tags["grokbench.analysis.sweep"] = sweep
    try:
        run_id = store.log_analysis(store.experiment_id(experiments[0]), files, tags)
    except store_errors() as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        log.warning("the tables are written, but %s refused the analysis run (%s); --no-log skips it", uri, reason)
        return
    print(f"logged them to MLflow as run {run_id} of {experiments[0]} (--no-log skips this)")


def checkout(package: Path = PACKAGE) -> Path | None:
    """The git checkout holding the analysis package, None for an installed copy."""
    root = package.parent
    return root if (root / ".git").exists() else None


def build_dir(name: str, package: Path = PACKAGE) -> Path:
    """build/analysis/<name> in the checkout (in the working directory where there is none): git ignores it, so
    the default never overwrites a committed table, wherever the command runs from."""
    return (checkout(package) or Path.cwd()) / BUILD / name


def results_dir(name: str, package: Path = PACKAGE) -> Path:
    """results/<name> in the checkout: the committed tables, rewritten."""
    root = checkout(package)
    if root is None:
        raise AnalysisError(f"--update-results writes a grokbench checkout's results/, and {package} is not in one")
    return root / RESULTS / name


def add_tracking_argument(parser: argparse.ArgumentParser) -> None:
    """--tracking-uri, as every analysis command takes it."""
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store, or the path of a SQLite one (default MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        default=None,
        help=f"directory for the files (default build/analysis/{name} in the grokbench checkout: git ignores it)",
    )
    where.add_argument(
        "--update-results",
        action="store_true",
        help=f"write the checkout's committed results/{name}/ instead",
    )


def output_dir(args: argparse.Namespace, name: str) -> Path:
    """Where `--out`, `--update-results` or the default puts a command's files."""
    if args.out:
        return Path(args.out)
    return results_dir(name) if args.update_results else build_dir(name)


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default=",".join(FORMATS), help=f"comma-separated: {', '.join(FORMATS)}")


def output_formats(text: str, prog: str) -> list[str] | None:
    """The formats a `--format` list names, or None after saying on stderr what is wrong with it."""
    formats = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        print(f"{prog}: error: --format: {', '.join(bad) or 'nothing'} not among {', '.join(FORMATS)}", file=sys.stderr)
        return None
    return formats


class NoteFormatter(logging.Formatter):
    """The analysis library's log records as the command's notes and warnings on stderr."""

    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        kind = "note" if record.levelno < logging.WARNING else f"{self.prog}: warning"
        return f"{kind}: {record.getMessage()}"


def run_command(prog: str, format_text: str, body: Callable[[list[str]], object]) -> int:
    """Exit status 2, the error said on stderr, for a bad `--format` or a store or selection the command cannot
    read; else run `body` with the formats and return 0. What the library logs meanwhile (which experiment it
    chose, a store that refused the analysis run) is said on stderr."""
    formats = output_formats(format_text, prog)
    if formats is None:
        return 2
    notes = logging.StreamHandler(sys.stderr)
    notes.setFormatter(NoteFormatter(prog))
    library = logging.getLogger("grokbench.analysis")
    library.addHandler(notes)
    library.setLevel(logging.INFO)
    try:
        body(formats)
    except (AnalysisError, SweepError) as err:  # a TrackingError is a SweepError
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    finally:
        library.removeHandler(notes)
    return 0
