"""grokbench as a user installs it: the wheel carries every module, the sweep files and the license, and an
installed grokbench finds its sweeps (those in subfolders too) whatever folder it runs in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import grokbench
from grokbench.shipped import sweep_names
from grokbench.sweep.spec import find_sweep_file

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "grokbench", "analysis", "sweeps")
EXTRA_SWEEP = "extra/xor_copy"  # a sweep in a subfolder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build leaves its folders there), plus one sweep file in a
    subfolder."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    (source / "sweeps" / EXTRA_SWEEP).parent.mkdir(exist_ok=True)
    shutil.copy(source / "sweeps" / "xor_tiny.yaml", source / "sweeps" / f"{EXTRA_SWEEP}.yaml")
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", str(source)]
    subprocess.run([*pip, "--wheel-dir", str(out)], check=True, capture_output=True)
    return next(out.glob("grokbench-*.whl"))


@pytest.fixture(scope="module")
def site_packages(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked: the layout `pip install` gives site-packages."""
    folder = tmp_path_factory.mktemp("site-packages")
    zipfile.ZipFile(wheel).extractall(folder)
    return folder


def run_installed(site_packages: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Python with the unpacked wheel ahead of the checkout's editable install, in another folder."""
    env = {**os.environ, "PYTHONPATH": str(site_packages)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)


def test_the_wheel_carries_every_module_every_sweep_file_and_the_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        p.relative_to(ROOT).as_posix() for package in ("grokbench", "analysis") for p in (ROOT / package).rglob("*.py")
    }
    sweeps = {
        f"grokbench/sweeps/{p.relative_to(ROOT / 'sweeps').as_posix()}" for p in (ROOT / "sweeps").rglob("*.yaml")
    }
    assert "grokbench/sweeps/xor_tiny.yaml" in sweeps
    assert not (modules | sweeps | {f"grokbench/sweeps/{EXTRA_SWEEP}.yaml"}) - names
    dist_info = f"grokbench-{grokbench.__version__}.dist-info"  # the version comes from grokbench.__version__
    assert f"{dist_info}/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()


@pytest.mark.slow  # runs the installed package in a subprocess: seconds
def test_an_installed_grokbench_finds_its_sweeps_from_another_folder(site_packages, tmp_path):
    code = "import grokbench.shipped as s, grokbench.benchmark.suite as b; print(s.SWEEPS_DIR); print(*s.sweep_names())"
    code += "; print(*b.suite_names()); print(b.load_suite('smoke').path)"
    folder, names, suites, smoke = run_installed(site_packages, tmp_path, "-c", code).stdout.splitlines()
    assert Path(folder) == site_packages / "grokbench" / "sweeps"
    assert {"xor_tiny", "mnist", EXTRA_SWEEP} <= set(names.split()) and "benchmarks/smoke" not in names.split()
    assert set(suites.split()) == {"smoke", "lite", "full"}
    assert Path(smoke) == site_packages / "grokbench" / "sweeps" / "benchmarks" / "smoke.yaml"


def test_a_checkout_finds_its_sweeps_from_another_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert find_sweep_file("xor_tiny") == ROOT / "sweeps" / "xor_tiny.yaml"
    assert sweep_names() == sorted(
        p.relative_to(ROOT / "sweeps").with_suffix("").as_posix()
        for p in (ROOT / "sweeps").rglob("*.yaml")
        if p.parent.name != "benchmarks"
    )


@pytest.mark.slow
def test_sweep_dry_run_by_name_from_another_folder_reads_the_installed_file(site_packages, tmp_path):
    """The command itself, from an empty folder, for a sweep in a subfolder (≈10 s: it times a few epochs)."""
    out = run_installed(site_packages, tmp_path, "-m", "grokbench.cli", "sweep", EXTRA_SWEEP, "--dry-run").stdout
    assert f"({site_packages / 'grokbench' / 'sweeps' / EXTRA_SWEEP}.yaml)" in out
    assert "4 trials to run" in out
    assert not list(tmp_path.iterdir())  # a dry run writes nothing where it runs
