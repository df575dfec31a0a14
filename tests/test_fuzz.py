"""Generated bad input for every parser a user feeds: sweep and suite files, the `run`, `sweep` and `benchmark`
settings, `analysis.tables` selections and `grokbench import` archives.

Each example goes in through the command line's entry function, in a fresh working directory, on a path that trains
nothing (`--dry-run --measure-epochs 0`, `--dry-run --measure-updates 0`, `run`'s configuration resolved as the
command resolves it, an import into a store that holds the archive's runs already). The property: the input is
accepted (exit 0), or refused with exit 2, one error line and no traceback, and leaves no file, store or directory
behind that was not there before, and no store changed. The default run holds a few derandomised examples of each;
`python -m pytest -m long -k fuzz` runs thousands (LONG_EXAMPLES, summed and checked at the end).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import io
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analysis.cli
import grokbench.cli
from grokbench.shipped import SWEEPS_DIR

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "results" / "runs" / "mnist_tuned.jsonl.gz"  # small, committed; cut to a few runs below
LONG_EXAMPLES = 5000  # the long tier's examples over all its tests, at least
LONG = {  # each long test's examples
    "sweep files": 1500,
    "suite files": 800,
    "run settings": 1000,
    "sweep settings": 800,
    "benchmark settings": 500,
    "archives": 1000,
    "analysis selections": 500,
}
RAN: Counter[str] = Counter()  # examples run per test, to check the long tier's total
OUTCOMES: Counter[str] = Counter()  # accepted / refused, per test


def tiers(default, long) -> list:
    """The test once with `default` (its examples) in the default run, once with `long` in the long tier, which is
    slow too: `-m "not slow"`, replacing the default `-m "not long"`, must not pick it up."""
    return [
        pytest.param(default, id="default"),
        pytest.param(long, id="long", marks=[pytest.mark.slow, pytest.mark.long]),
    ]


def fuzzed(test: Callable, examples: int) -> Callable:
    return settings(
        derandomize=True,
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )(test)


@pytest.fixture(autouse=True)
def no_ambient_store(monkeypatch):
    """The defaults (./mlflow.db, ./grokbench_results) must land in the example's own directory."""
    for name in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


# ---- the property ---------------------------------------------------------------------------------------------


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file and directory under the roots, with each file's digest."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            found[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def accepted_or_refused(
    main: Callable[[Sequence[str]], int], argv: Sequence[str], here: Path, also_watch: Sequence[Path] = ()
) -> None:
    """Run `main(argv)` in `here` and check the property."""
    before = snapshot(here, *also_watch)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(here), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as stop:  # argparse's refusals
            code = stop.code
    said = err.getvalue()
    assert "Traceback" not in said, f"{argv}: {said}"
    if code == 0:
        OUTCOMES[f"{main.__module__} {argv[0]} accepted"] += 1
        return
    assert code == 2, f"{argv}: exit {code}: {said}"
    errors = [line for line in said.split("\n") if line.strip()]  # a line a terminal shows
    assert len(errors) == 1 and ": error: " in errors[0], f"{argv}: not one error line: {said!r}"
    assert snapshot(here, *also_watch) == before, f"{argv} was refused ({errors[0]}) but left something behind"
    OUTCOMES[f"{main.__module__} {argv[0]} refused"] += 1


@contextlib.contextmanager
def fresh_dir():
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        yield Path(tmp)


# ---- values a user might type ---------------------------------------------------------------------------------

NASTY_NUMBERS = st.sampled_from(
    [0, -1, 1, 2, -0.0, 0.5, 1e-300, 1e308, 10**30, -(10**30), 2**63, float("nan"), float("inf"), float("-inf")]
)
NUMBERS = st.one_of(NASTY_NUMBERS, st.integers(), st.floats())
SCALARS = st.one_of(NUMBERS, st.booleans(), st.none(), st.text(max_size=12), st.sampled_from(["", "null", "~", "1e3"]))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8) | SCALARS, inner, max_size=3)
    ),
    max_leaves=6,
)
NAMES = st.one_of(  # of keys: a typo, another section's, one no message could show on a line
    st.text(min_size=1, max_size=8), st.sampled_from(["baseline", "seed", "lam", "xor", "a\nb", "\t", " ", "ü", "1"])
)
TEXT = st.one_of(
    st.text(max_size=20),
    st.from_regex(r"-?[0-9]{1,25}(\.[0-9]*)?(e-?[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(["nan", "inf", "-inf", "NaN", "-1", "0", "1e999", "true", "none", "", " ", "0x10", "1_000"]),
)


def yaml_text(value) -> str:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)


# ---- files: sweeps and suites ---------------------------------------------------------------------------------


def template(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


SWEEP = template(SWEEPS_DIR / "xor_tiny.yaml")
SEARCH_SWEEP = {
    **{k: v for k, v in SWEEP.items() if k != "grid"},
    "name": "xor_search",
    "search": {"num_samples": 2, "seed": 0, "space": {"grokalign": {"lam": {"low": 1e-5, "high": 1e-2, "log": True}}}},
    "methods": {"grokalign": {}},
    "smoke": {"num_samples": 1, "max_epochs": 10},
}
SUITE = template(SWEEPS_DIR / "benchmarks" / "smoke.yaml")


def key_paths(value, prefix=()) -> list[tuple]:
    """Every place in a nested structure a mutation can reach: mapping keys and list indices."""
    places = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            places += key_paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            places += key_paths(inner, (*prefix, index))
    return places


def mutated(document, place: tuple, how: str, value, name: str):
    """The document with one change at `place`: replaced by `value`, deleted, renamed `name`, or given an unknown key
    `name`."""
    document = copy.deepcopy(document)
    if not place:
        return value if how == "replace" else document
    parent = document
    for step in place[:-1]:
        parent = parent[step]
    if how == "replace":
        parent[place[-1]] = value
    elif how == "delete":
        del parent[place[-1]]
    elif how == "rename" and isinstance(parent, dict):
        parent[name] = parent.pop(place[-1])
    elif isinstance(parent[place[-1]], dict):
        parent[place[-1]][name] = value
    return document


NOT_UTF8 = [b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80\x80", b"\xfe\xff"]


@st.composite
def documents(draw, base: dict) -> bytes:
    """A YAML file: the base with a few changes, or any YAML at all, or bytes, some of them not UTF-8."""
    kind = draw(st.sampled_from(["mutated"] * 6 + ["any yaml", "bytes", "not utf-8"]))
    if kind == "any yaml":
        return yaml_text(draw(VALUES)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    text = yaml_text(base).encode()
    if kind == "not utf-8":
        at = draw(st.integers(0, len(text)))
        return (
            text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80\x80", b"\xfe\xff"])) + text[at:]
        )
    document = base
    for _ in range(draw(st.integers(1, 3))):
        place = draw(st.sampled_from(key_paths(document)))
        how = draw(st.sampled_from(["replace", "replace", "delete", "rename", "unknown key"]))
        document = mutated(document, place, how, draw(VALUES), draw(NAMES))
    return yaml_text(document).encode()


def with_file(name: str, content: bytes, argv: Callable[[str], list[str]]) -> None:
    with fresh_dir() as here:
        (here / name).write_bytes(content)
        accepted_or_refused(grokbench.cli.main, argv(name), here)


@pytest.mark.parametrize("examples", tiers(40, LONG["sweep files"]))
def test_sweep_files(examples):
    @given(content=st.one_of(documents(SWEEP), documents(SEARCH_SWEEP)))
    def check(content):
        RAN["sweep files"] += 1
        with_file("fuzzed.yaml", content, lambda f: ["sweep", f, "--dry-run", "--measure-epochs", "0"])

    fuzzed(check, examples)()


@pytest.mark.parametrize("examples", tiers(30, LONG["suite files"]))
def test_suite_files(examples):
    @given(content=documents(SUITE))
    def check(content):
        RAN["suite files"] += 1
        with_file("fuzzed.yaml", content, lambda f: ["benchmark", f, "--dry-run", "--measure-updates", "0"])

    fuzzed(check, examples)()


# ---- settings on the command line -----------------------------------------------------------------------------


def flag_values(flags: Sequence[str]) -> st.SearchStrategy[list[str]]:
    """A few of the flags, each with a typed-looking or random value."""
    one = st.tuples(st.sampled_from(list(flags)), st.one_of(TEXT, NUMBERS.map(str)))
    return st.lists(one, min_size=1, max_size=4).map(lambda pairs: [t for flag, v in pairs for t in (flag, v)])


def setting_flags(task: str) -> list[str]:
    from grokbench.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]  # the `run` parser's task parsers
    one = run._subparsers._group_actions[0].choices[task]
    return [a.option_strings[0] for a in one._actions if a.option_strings and a.dest not in ("help", "json")]


def resolve_only(args) -> int:
    grokbench.cli._config_from_args(args)
    return 0


@pytest.mark.parametrize("examples", tiers(60, LONG["run settings"]))
def test_run_settings(examples, monkeypatch):
    """`grokbench run`'s flags, resolved to a trial's configuration by the command's own function; a configuration
    that resolves is where `run` would start training, so it stops there."""
    monkeypatch.setattr(grokbench.cli, "cmd_run", resolve_only)
    flags = {task: setting_flags(task) for task in ("mnist", "xor", "modarith", "polynomial")}

    @given(task=st.sampled_from(sorted(flags)), data=st.data())
    def check(task, data):
        RAN["run settings"] += 1
        argv = data.draw(flag_values([*flags[task], "--no-such-setting", "--lr=1"]))
        with fresh_dir() as here:
            accepted_or_refused(grokbench.cli.main, ["run", task, *argv], here)

    fuzzed(check, examples)()


SWEEP_FLAGS = [
    "--seeds",
    "--max-epochs",
    "--methods",
    "--only",
    "--num-samples",
    "--cpus-per-trial",
    "--gpus-per-trial",
    "--max-concurrent",
    "--sweep-id",
    "--storage",
    "--address",
]
URIS = st.sampled_from(["store.db", "sqlite:///store.db", "sqlite:///no/such/dir/x.db", "file:./runs", "", " "])


@pytest.mark.parametrize("examples", tiers(40, LONG["sweep settings"]))
def test_sweep_settings(examples):
    @given(
        argv=flag_values(SWEEP_FLAGS),
        uri=st.one_of(st.none(), URIS),
        smoke=st.booleans(),
        measure=st.sampled_from(["0", "-1", "x", "", "1e3", "0.5"]),  # none that would time (train) an epoch
    )
    def check(argv, uri, smoke, measure):
        RAN["sweep settings"] += 1
        sweep = str(SWEEPS_DIR / "xor_tiny.yaml")
        argv = ["sweep", sweep, "--dry-run", *(["--smoke"] if smoke else []), *argv]
        argv += ["--tracking-uri", uri] if uri is not None else []
        argv += ["--measure-epochs", measure]
        with fresh_dir() as here:
            accepted_or_refused(grokbench.cli.main, argv, here)

    fuzzed(check, examples)()


BENCHMARK_FLAGS = ["--cpus-per-trial", "--gpus-per-trial", "--max-concurrent", "--benchmark-id", "--out"]


@pytest.mark.parametrize("examples", tiers(30, LONG["benchmark settings"]))
def test_benchmark_settings(examples):
    @given(argv=flag_values(BENCHMARK_FLAGS))
    def check(argv):
        RAN["benchmark settings"] += 1
        suite = str(SWEEPS_DIR / "benchmarks" / "smoke.yaml")
        with fresh_dir() as here:
            accepted_or_refused(
                grokbench.cli.main, ["benchmark", suite, "--dry-run", "--measure-updates", "0", *argv], here
            )

    fuzzed(check, examples)()


# ---- archives and the stores they fill ------------------------------------------------------------------------


def small_archive_lines() -> list[str]:
    """The committed archive's header and first two runs, each with a few points of a few metrics."""
    with gzip.open(ARCHIVE, "rt") as stream:
        lines = stream.read().splitlines()
    header = {**json.loads(lines[0]), "runs": 2}
    records = [json.loads(line) for line in lines[1:3]]
    for record in records:
        record["metrics"] = {k: v[:3] for k, v in list(record["metrics"].items())[:4]}
    return [json.dumps(header), *(json.dumps(r) for r in records)]


def packed(lines: Sequence[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory, migrated_store) -> Path:
    """A store holding the small archive's runs: importing it again (re-ordered, say) adds nothing, fast."""
    folder = tmp_path_factory.mktemp("filled")
    shutil.copy(migrated_store, folder / "mlflow.db")
    (folder / "small.jsonl.gz").write_bytes(packed(small_archive_lines()))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with contextlib.chdir(folder), contextlib.redirect_stderr(io.StringIO()):
        assert grokbench.cli.main(["import", "small.jsonl.gz", "--tracking-uri", uri]) == 0
    return folder / "mlflow.db"


DAMAGED = ("truncated", "bit-flipped", "header")  # never a whole archive: these may go to a store not there yet


@st.composite
def damaged_archives(draw) -> tuple[str, bytes]:
    how = draw(st.sampled_from([*DAMAGED, "text flipped", "re-ordered", "record"]))
    return how, damage(draw, how, small_archive_lines())


def damage(draw, how: str, lines: list[str]) -> bytes:
    whole = packed(lines)
    if how == "truncated":
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if how == "bit-flipped":
        flipped = bytearray(whole)
        for at in draw(st.lists(st.integers(0, len(whole) * 8 - 1), min_size=1, max_size=3)):
            flipped[at // 8] ^= 1 << (at % 8)
        return bytes(flipped)
    if how == "text flipped":  # damage under an intact gzip layer
        text = bytearray("\n".join(lines).encode())
        at = draw(st.integers(0, len(text) - 1))
        text[at] ^= 1 << draw(st.integers(0, 7))
        return gzip.compress(bytes(text))
    if how == "re-ordered":
        return packed(draw(st.permutations(lines)))
    if how == "header":
        return packed([json.dumps(draw(VALUES)) if draw(st.booleans()) else draw(st.text(max_size=30)), *lines[1:]])
    record = json.loads(lines[1])
    place = draw(st.sampled_from([p for p in key_paths(record) if len(p) <= 3]))
    changed = mutated(record, place, draw(st.sampled_from(["replace", "delete"])), draw(VALUES), "x")
    return packed([lines[0], json.dumps(changed), lines[2]])


@pytest.mark.parametrize("examples", tiers(40, LONG["archives"]))
def test_archives(examples, filled_store):
    """Imports into a copy of a store that holds the archive's runs (an accepted one adds nothing; a refused one
    must leave it as it was), or into a store not there yet (a refused one must not create it)."""

    @given(damaged=damaged_archives(), into_new=st.booleans())
    def check(damaged, into_new):
        how, archive = damaged
        RAN["archives"] += 1
        with fresh_dir() as here:
            (here / "runs.jsonl.gz").write_bytes(archive)
            shutil.copy(filled_store, here / "filled.db")
            target = "new.db" if into_new and how in DAMAGED else "filled.db"
            uri = f"sqlite:///{here / target}"
            accepted_or_refused(grokbench.cli.main, ["import", "runs.jsonl.gz", "--tracking-uri", uri], here)

    fuzzed(check, examples)()


@pytest.mark.parametrize("examples", tiers(25, LONG["analysis selections"]))
def test_analysis_selections(examples, filled_store):
    """`analysis.tables` selections against a store that holds two trials of mnist_tuned (sweep mnist_tuned-1)."""
    experiments = st.one_of(st.sampled_from(["mnist_tuned", "grokbench/mnist_tuned", "mnist_tuned,mnist"]), TEXT)
    sweeps = st.one_of(st.sampled_from(["mnist_tuned-1", "mnist_tuned-2"]), TEXT)
    epochs = st.one_of(st.sampled_from(["10", "1", "0", "-5"]), TEXT, NUMBERS.map(str))

    @given(
        experiment=st.one_of(st.none(), experiments),
        sweep=st.one_of(st.none(), sweeps),
        max_epochs=st.one_of(st.none(), epochs),
    )
    def check(experiment, sweep, max_epochs):
        RAN["analysis selections"] += 1
        argv = ["--tracking-uri", str(filled_store), "--no-log", "--out", "out"]
        for flag, value in (("--experiment", experiment), ("--sweep", sweep), ("--max-epochs", max_epochs)):
            argv += [f"{flag}={value}"] if value is not None else []
        with fresh_dir() as here:
            accepted_or_refused(analysis.cli.main, argv, here, also_watch=[filled_store.parent])

    fuzzed(check, examples)()


@pytest.mark.parametrize("tier", tiers("default", "long"))
def test_examples_summed(tier):
    """Runs last in its tier (pytest keeps the file's order): the examples run, summed; the whole long tier (not a
    -k part of it) runs at least LONG_EXAMPLES."""
    total = sum(RAN.values())
    print(f"\n{tier} tier: {total} generated inputs: {dict(RAN)}; {dict(OUTCOMES)}")
    if tier == "long" and len(RAN) == len(LONG):
        assert total >= LONG_EXAMPLES, RAN


def test_the_long_tier_plans_enough():
    assert sum(LONG.values()) >= LONG_EXAMPLES
