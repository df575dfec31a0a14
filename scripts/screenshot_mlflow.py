"""Screenshot an experiment in the MLflow UI, to see what a user sees there: the runs table (a sweep's or a benchmark's
parent run expanded to show its trial runs), one trial run's page, and the parent run's artifacts with one of them
open (a benchmark's leaderboard). Not part of CI: it needs Debian's `chromium` (apt-get install -y chromium) and
Playwright's Python package (pip install playwright; it drives that Chromium, it downloads no browser of its own).

    python scripts/screenshot_mlflow.py STORE EXPERIMENT PREFIX [--artifact PATH]

It starts a lean `mlflow server` (one worker, no job runner) on a free port of 127.0.0.1 over the SQLite store, in a
scratch directory so that nothing lands in the working directory, and writes PREFIX-runs.png, PREFIX-run.png and,
where the experiment has a parent run holding PATH (default leaderboard/leaderboard.md), PREFIX-artifacts.png.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow

CHROMIUM = "/usr/bin/chromium"
# as root, in a closed network: no sandbox, and none of the background connections that would be refused
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEW = "workflowType=machine_learning"  # the runs table, not the MLflow 3 GenAI views
EXPANDER = "button[data-component-id*='runnamecellrenderer']"  # a parent run's + in the Run Name cell


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, scratch: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = ["mlflow", "server", "--workers", "1", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{store}"]
    log = open(scratch / "server.log", "w")  # noqa: SIM115 - closed with the process, below
    server = subprocess.Popen(command, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(90):
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            return server, base
        except OSError:
            time.sleep(1)
    server.terminate()
    sys.exit(f"screenshot_mlflow: the server did not start:\n{(scratch / 'server.log').read_text()}")


def runs_of(store: Path, experiment: str) -> tuple[str, str | None, str | None]:
    """The experiment's id, its newest parent run and one of its trial runs (None where it has none)."""
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        sys.exit(f"screenshot_mlflow: no experiment {experiment} in {store}")
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=200)
    parents = [r.info.run_id for r in runs if "grokbench.parent" in r.data.tags]
    trials = [r.info.run_id for r in runs if "grokbench.trial_key" in r.data.tags]
    return found.experiment_id, (parents[0] if parents else None), (trials[0] if trials else None)


def shoot(base: str, experiment_id: str, parent: str | None, trial: str | None, artifact: str, prefix: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/#/experiments/{experiment_id}/runs?{VIEW}")
        page.wait_for_selector("a[href*='/runs/']", timeout=60_000)
        close = page.get_by_role("button", name="Close")  # the assistant's panel, over a third of the table
        if close.count():
            close.first.click()
        if parent and page.locator(EXPANDER).count():
            page.locator(EXPANDER).first.click()
        save(page, f"{prefix}-runs.png")
        if trial:
            page.goto(f"{base}/#/experiments/{experiment_id}/runs/{trial}?{VIEW}")
            save(page, f"{prefix}-run.png")
        if parent:
            page.goto(f"{base}/#/experiments/{experiment_id}/runs/{parent}/artifacts?{VIEW}")
            page.wait_for_selector("text=" + artifact.split("/")[0], timeout=60_000)
            for name in artifact.split("/"):  # open each folder, then the file
                page.get_by_text(name, exact=True).first.click()
            save(page, f"{prefix}-artifacts.png")
        browser.close()


def save(page, path: str) -> None:
    page.wait_for_timeout(3000)  # let the table and its columns settle
    page.screenshot(path=path)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="screenshot_mlflow.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path, help="a SQLite tracking store (mlflow.db)")
    parser.add_argument("experiment", help="the experiment to show (grokbench/benchmark_lite)")
    parser.add_argument("prefix", help="where the PNGs go: PREFIX-runs.png, PREFIX-run.png, PREFIX-artifacts.png")
    parser.add_argument("--artifact", default="leaderboard/leaderboard.md", help="the parent run's file to open")
    args = parser.parse_args()
    if not args.store.is_file():
        parser.error(f"no store at {args.store}")
    if not Path(CHROMIUM).exists():
        parser.error(f"no {CHROMIUM}: apt-get install -y chromium")
    experiment_id, parent, trial = runs_of(args.store.resolve(), args.experiment)
    with tempfile.TemporaryDirectory() as scratch:
        server, base = start_server(args.store.resolve(), Path(scratch))
        try:
            shoot(base, experiment_id, parent, trial, args.artifact, args.prefix)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
