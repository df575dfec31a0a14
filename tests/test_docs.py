"""The documentation against the code: README's size and links, the settings tables, the names page, the example.

`python tests/test_docs.py` rewrites the generated settings tables of docs/tasks-and-methods.md from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from grokbench.config import SHARED, TrialConfig
from grokbench.methods import METHODS
from grokbench.settings import help_of
from grokbench.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SETTINGS_PAGE = DOCS / "tasks-and-methods.md"
NAMES_PAGE = DOCS / "names.md"
EXAMPLE_PAGE = DOCS / "extending.md"
SWEEP_FILES_PAGE = DOCS / "sweep-files.md"
README_MAX_LINES = 200
GENERATED = re.compile(r"(<!-- settings: (?P<owner>[a-z_ ]+?) -->\n)(?P<table>.*?)(<!-- end settings -->)", re.S)


# ---- README ---------------------------------------------------------------------------------------------------


def test_readme_is_a_front_door_of_at_most_200_lines():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


def test_every_relative_link_of_the_readme_exists():
    text = (REPO / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert targets, "the README links nothing: its command table should link the docs"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"


def test_every_command_in_the_readme_table_links_a_docs_page():
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `")]
    commands = [row for row in rows if re.match(r"\| `(grokbench|python -m|ray|mlflow|mkdocs)", row)]
    assert len(commands) >= 8, f"expected the table of commands, found {len(commands)} rows"
    for row in commands:
        links = re.findall(r"\]\((docs/[^)#]+)", row)
        assert links and all((REPO / link).is_file() for link in links), f"no docs page linked from: {row}"


def shown_commands(path: Path) -> list[tuple[str, str]]:
    """Each `grokbench SUBCOMMAND ...` in a page's bash blocks and code spans: (subcommand, the rest of its line)."""
    text = path.read_text()
    code = "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text))
    return re.findall(r"grokbench ([a-z-]+)((?: [^`|#'\n]*)?)", code)


def flags_of(subcommands: dict, command: str, rest: str) -> set[str]:
    """The flags `grokbench COMMAND` takes; for `run`, those of the task it names (every task's setting flags)."""
    parsers = [subcommands[command]]
    task = re.match(r" ([A-Za-z]+)", rest)
    if command == "run" and task:  # a task named, or a placeholder (TASK) standing for any
        tasks = next(a for a in parsers[0]._actions if a.dest == "task").choices
        parsers = [tasks[task.group(1)]] if task.group(1) in tasks else list(tasks.values())
    return {o for parser in parsers for a in parser._actions for o in a.option_strings}


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))])
def test_every_grokbench_command_and_flag_a_page_shows_exists(page):
    """The commands as they really are: each `grokbench SUBCOMMAND --flag` a page shows, the CLI has (but for the
    example method's flags, which exist once a reader has added it)."""
    from grokbench.cli import build_parser

    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    path = REPO / page if page == "README.md" else DOCS / page
    for command, rest in shown_commands(path):
        assert command in subcommands, f"{page} shows `grokbench {command}`, which the CLI does not have"
        flags = flags_of(subcommands, command, rest)
        unknown = [f for f in re.findall(r"(--[a-z0-9-]+)", rest) if f not in flags and "gradnoise" not in f]
        assert not unknown, f"{page} shows `grokbench {command}{rest}` with {unknown}, which it does not take"


# ---- settings tables, generated from the code ------------------------------------------------------------------


def _owners() -> dict[str, list[dataclasses.Field]]:
    """Every component with settings of its own, and the shared settings, as the page names them."""
    shared = [f for f in dataclasses.fields(TrialConfig) if f.name in SHARED]
    owners = {"shared": shared}
    owners |= {f"task {name}": list(dataclasses.fields(task.Settings)) for name, task in TASKS.items()}
    owners |= {f"method {name}": list(dataclasses.fields(m.Settings)) for name, m in METHODS.items()}
    return {owner: fields for owner, fields in owners.items() if fields}


def _shown(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def settings_table(fields: list[dataclasses.Field]) -> str:
    rows = ["| setting | flag | default | what |", "|---|---|---|---|"]
    for f in fields:
        # the task is `grokbench run`'s positional argument, not a flag
        flag = "grokbench run TASK" if f.name == "task" else "--" + f.name.replace("_", "-")
        rows.append(f"| `{f.name}` | `{flag}` | {_shown(f.default)} | {help_of(f).replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"


def generated_page(text: str) -> str:
    """The page with each generated table rendered from the code as it is now."""
    owners = _owners()
    return GENERATED.sub(lambda m: m.group(1) + settings_table(owners[m.group("owner")]) + m.group(4), text)


BENCHMARK_PAGE = DOCS / "benchmark.md"
SPACES = re.compile(r"(<!-- spaces: (?P<suite>[a-z_]+) -->\n)(?P<table>.*?)(<!-- end spaces -->)", re.S)


def spaces_table(suite_name: str) -> str:
    """What each arm of a shipped suite tunes under each ruleset, as its dry run prints it."""
    from grokbench.benchmark.plan import arm_rows
    from grokbench.benchmark.suite import load_suite

    header, *rows = arm_rows(load_suite(suite_name))
    cells = [header, ["---"] * len(header), *([f"`{r[0]}`", *r[1:]] for r in rows)]
    return "\n".join("| " + " | ".join(row) + " |" for row in cells) + "\n"


def test_the_benchmark_page_shows_what_each_arm_tunes_as_the_suite_file_says():
    text = BENCHMARK_PAGE.read_text()
    generated = SPACES.sub(lambda m: m.group(1) + spaces_table(m.group("suite")) + m.group(4), text)
    assert SPACES.search(text), "docs/benchmark.md shows no suite's search spaces"
    assert text == generated, "the arms' search spaces differ from the suite file: run `python tests/test_docs.py`"


def test_the_settings_tables_are_those_of_the_code():
    text = SETTINGS_PAGE.read_text()
    on_page = [m.group("owner") for m in GENERATED.finditer(text)]
    assert sorted(on_page) == sorted(_owners()), "a component's settings table is missing or no longer exists"
    assert text == generated_page(text), "the settings tables differ from the code: run `python tests/test_docs.py`"


def test_a_setting_the_page_lacks_fails_the_comparison():
    text = SETTINGS_PAGE.read_text()
    dropped = text.replace("| `grokfast_window` |", "| `grokfast_windows` |")
    assert dropped != text and dropped != generated_page(dropped)


# ---- the names page against what the code logs, both ways -------------------------------------------------------

TINY = {  # each task small enough to train two epochs in a second
    "xor": dict(p=8, hidden=8, train_size=16, test_size=16, probe_size=8),
    "mnist": dict(train_size=32, test_size=32, batch_size=32, probe_size=8),
    "modarith": dict(p=5, d_model=8, n_heads=2, d_mlp=8),
    "polynomial": dict(dim=4, train_size=8, test_size=8, width=8, probe_size=8),
}
FAMILY = re.compile(r"<[^>]*>")  # best.<sweep id>.<method>.<setting>: one name for a family


def page_sections(path: Path) -> dict[str, dict[str, set[str]]]:
    """Per `## ` section, each backticked name in a table's first column → the tasks its second column names."""
    sections: dict[str, dict[str, set[str]]] = {}
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
        row = re.match(r"\| `([^`]+)` \| ([^|]*) \|", line)
        if row:
            tasks = {t.strip() for t in row.group(2).split(",")}
            tasks = set(TINY) if tasks == {"all"} else tasks & set(TINY)
            sections.setdefault(section, {})[FAMILY.sub("<>", row.group(1))] = tasks
    return sections


@pytest.fixture(scope="module")
def logged(mnist_available) -> dict[str, dict[str, set[str]]]:
    """What a real trial of each task logs: the names of each evaluation's curve point as the driver receives it,
    and its summary's keys, split as the driver splits them into metrics (numbers) and the rest."""
    from grokbench.resolve import config_of
    from grokbench.sweep.tracking import NOT_SUMMARY_METRICS
    from grokbench.sweep.trainable import curve_point
    from grokbench.train import Trial

    found: dict[str, dict[str, set[str]]] = {"curve": {}, "summary": {}, "numbers": {}, "not numbers": {}}
    for task, settings in TINY.items():
        trial = Trial(config_of(task=task, max_epochs=2, eval_every=1, **settings))
        points: list[dict] = []
        summary = trial.run(callback=lambda ev, _trial, points=points: points.append(curve_point(ev)))
        found["curve"][task] = {name for point in points for name in point} - {"step"}
        found["summary"][task] = set(summary)
        kept = {k for k, v in summary.items() if k not in NOT_SUMMARY_METRICS}
        numbers = {k for k in kept if isinstance(summary[k], (int, float)) and not isinstance(summary[k], bool)}
        found["numbers"][task] = numbers
        found["not numbers"][task] = set(summary) - kept | {k for k in kept if isinstance(summary[k], (str, bool))}
    return found


def by_name(per_task: dict[str, set[str]]) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for task, logged_names in per_task.items():
        for name in logged_names:
            names.setdefault(name, set()).add(task)
    return names


def assert_same_names(on_page: dict[str, set[str]], logged_names: dict[str, set[str]], what: str) -> None:
    assert sorted(set(logged_names) - set(on_page)) == [], f"{what} the code logs that docs/names.md lacks"
    assert sorted(set(on_page) - set(logged_names)) == [], f"{what} docs/names.md lists that the code no longer logs"
    wrong = {name: (on_page[name], tasks) for name, tasks in logged_names.items() if on_page[name] != tasks}
    assert not wrong, f"{what} whose tasks differ (page, code): {wrong}"


def test_the_names_page_lists_every_curve_metric_the_code_logs_and_no_other(logged):
    assert_same_names(page_sections(NAMES_PAGE)["curve metrics"], by_name(logged["curve"]), "curve metrics")


def test_the_names_page_lists_every_summary_key_the_code_logs_and_no_other(logged):
    sections = page_sections(NAMES_PAGE)
    metrics, others = sections["summary metrics"], sections["summary keys that are not metrics"]
    assert_same_names({**others, **metrics}, by_name(logged["summary"]), "summary keys")
    numbers, not_numbers = by_name(logged["numbers"]), by_name(logged["not numbers"])
    assert sorted(set(numbers) - set(metrics)) == [], "numbers the driver logs as metrics, listed as not metrics"
    assert sorted(set(not_numbers) - set(others)) == [], "keys the driver does not log as metrics, listed as metrics"


def _sources() -> list[ast.Module]:
    files = [*(REPO / "grokbench").rglob("*.py"), *(REPO / "analysis").rglob("*.py")]
    return [ast.parse(f.read_text()) for f in sorted(files)]


def _string_constants(trees: list[ast.Module]) -> dict[str, str]:
    """Module-level NAME = "text" of every module, so that a tag named through a constant is read as its text."""
    constants = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and len(node.targets) == 1:
                if isinstance(node.targets[0], ast.Name) and isinstance(node.value.value, str):
                    constants[node.targets[0].id] = node.value.value
    return constants


def _text(node: ast.AST | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.JoinedStr):  # f"{BEST_PREFIX}{sweep_id}.{method}": a family of names
        parts = [_text(v.value if isinstance(v, ast.FormattedValue) else v, constants) for v in node.values]
        return "".join(part if part is not None else "<>" for part in parts)
    return None


def _is_tags(node: ast.AST) -> bool:
    """A name, attribute or call that holds tags by its name (`tags`, `self.context`'s `context_tags()`)."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "tags" in name.lower() or name == "context"


def _tag_keys(node: ast.AST) -> list[ast.AST]:
    """The tag names this node writes, if it writes any."""
    if isinstance(node, ast.Call):
        method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        if method in ("set_tag", "set_experiment_tag") and len(node.args) >= 2:
            return [node.args[1]]
        if method == "setdefault" and _is_tags(node.func.value):
            return node.args[:1]
        return [k for kw in node.keywords if kw.arg == "tags" for k in _dict_keys(kw.value)]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and "tags" in t.id for t in targets):
            return _dict_keys(node.value)
        return [t.slice for t in targets if isinstance(t, ast.Subscript) and _is_tags(t.value)]
    if isinstance(node, ast.Dict) and any(
        k is None and _is_tags(v) for k, v in zip(node.keys, node.values, strict=True)
    ):
        return [k for k in node.keys if k is not None]  # {**tags, MORE_TAG: ...}
    return []


def _dict_keys(node: ast.AST | None) -> list[ast.AST]:
    if isinstance(node, ast.Dict):
        return [k for k in node.keys if k is not None]
    if isinstance(node, ast.DictComp):
        return [node.key]
    return []


def logged_tags() -> set[str]:
    """Every tag name the code writes: to a run (set_tag, a `tags` mapping, {**tags, ...}), to an experiment, the
    `*_TAG` constants, and the machine's tags as `grokbench.machine` makes them."""
    from grokbench.machine import as_tags, this_machine

    trees = _sources()
    constants = _string_constants(trees)
    names = {value for name, value in constants.items() if name.endswith("_TAG")}
    for tree in trees:
        for node in ast.walk(tree):
            names |= {_text(key, constants) for key in _tag_keys(node)}
    names.discard(None)
    return {FAMILY.sub("<>", name) for name in names} | set(as_tags(this_machine()))


def test_the_names_page_lists_every_tag_the_code_logs_and_no_other():
    sections = page_sections(NAMES_PAGE)
    on_page = set(sections["tags"])
    logged = logged_tags()
    assert sorted(logged - on_page) == [], "tags the code logs that docs/names.md lacks"
    assert sorted(on_page - logged) == [], "tags docs/names.md lists that the code no longer logs"


def test_the_names_page_lists_every_param_beside_the_settings():
    """Params are the settings (generated above from the code) and what the driver adds: `params[NAME] = ...`."""
    tree = ast.parse((REPO / "grokbench" / "sweep" / "tracking.py").read_text())
    added = {
        target.slice.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id == "params"
    }
    assert added and set(page_sections(NAMES_PAGE)["params"]) == added


def test_the_tag_scan_sees_a_tag_and_its_absence():
    """The scan is what the two-way check rests on: it must find a tag set in any of the code's ways, and no other."""
    snippet = ast.parse(
        'store.set_tag(run_id, "a.one", "x")\ntags = {"a.two": 1}\ntags["a.three"] = 2\n'
        'log_batch(run_id, tags={"a.four": 3})\nrecord = {**tags, "a.five": 4}\nplain = {"not.a.tag": 5}'
    )
    found = {_text(key, {}) for node in ast.walk(snippet) for key in _tag_keys(node)}
    assert found == {"a.one", "a.two", "a.three", "a.four", "a.five"}


# ---- the sweep-file schema and the shipped sweep files -----------------------------------------------------------


def test_the_sweep_file_keys_on_the_page_are_those_the_parser_allows():
    from grokbench.sweep import spec

    nested = {
        "resources": spec.RESOURCE_KEYS,
        "search": spec.SEARCH_KEYS,
        "search.space.METHOD.SETTING": spec.RANGE_KEYS,
        "smoke": spec.SMOKE_KEYS,
    }
    allowed = set(spec.TOP_LEVEL_KEYS) | {"search.space"}
    allowed |= {f"{parent}.{key}" for parent, keys in nested.items() for key in keys}
    assert set(page_sections(SWEEP_FILES_PAGE)["the schema"]) == allowed


def test_the_page_lists_every_shipped_sweep_file_and_no_other():
    from grokbench.shipped import sweep_names

    listed = set(page_sections(SWEEP_FILES_PAGE)["the sweep files that ship with grokbench"])
    assert listed == {f"{name}.yaml" for name in sweep_names()}


def test_every_measurement_on_the_performance_page_says_where_when_and_at_which_commit():
    sections = re.split(r"\n#{2,3} ", (DOCS / "performance.md").read_text())[1:]
    stamp = re.compile(r"\*Machine: [^*]+ Recorded at [0-9a-f]{7,40},\s+\d{4}-\d{2}-\d{2}")
    unstamped = [section.splitlines()[0] for section in sections if not stamp.search(section)]
    assert len(sections) >= 5 and not unstamped, f"sections without a machine, commit and date: {unstamped}"


# ---- the example method of docs/extending.md, run as the page shows it ----------------------------------------


def example_method() -> str:
    """The page's one Python block: the method a reader copies."""
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLE_PAGE.read_text(), re.S)
    assert len(blocks) == 1, "docs/extending.md should hold exactly one Python block: the example method"
    return blocks[0]


@pytest.mark.slow  # trains XOR to grokking with the example method: seconds
def test_the_example_method_registers_and_groks_on_xor():
    registered = dict(METHODS)
    namespace: dict = {}
    try:
        exec(compile(example_method(), str(EXAMPLE_PAGE), "exec"), namespace)
        assert METHODS["gradnoise"] is namespace["GradNoise"]
        summary = namespace["summary"]
    finally:  # the rest of the session sees the registry as the code has it
        METHODS.clear()
        METHODS.update(registered)
    assert summary["status"] == "grokked"
    # what the page says it prints
    printed = f"grokked at step {summary['steps_to_grok']} after memorising at {summary['steps_to_memorise']}"
    assert f"It prints `{printed}`" in EXAMPLE_PAGE.read_text()


if __name__ == "__main__":
    SETTINGS_PAGE.write_text(generated_page(SETTINGS_PAGE.read_text()))
    BENCHMARK_PAGE.write_text(
        SPACES.sub(lambda m: m.group(1) + spaces_table(m.group("suite")) + m.group(4), BENCHMARK_PAGE.read_text())
    )
