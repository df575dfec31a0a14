"""MNIST grokking (GrokAlign Table 1, after Omnigrok): 1024 train / 1024 test images, a deep bias-free MLP
initialised α=8 times too large, AdamW with weight decay; grokked at test accuracy > 0.85.

The `omnigrok` preset is the Omnigrok / Grokfast setting as ironjr/grokfast's main_mnist.py runs it: 1000
training images, a 784-200-200-10 MLP with biases, MSE on one-hot targets, batches of 200, float32, the full test
set. Their script declares no grokking threshold; the preset keeps this task's 0.85, ours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from grokbench.config import TrialConfig
from grokbench.settings import Settings, at_most, non_negative, one_of, positive, setting
from grokbench.tasks.base import DataError, Presentation, Task, TaskData, data_root, mlp, scale_weights

SPLIT_SIZES = {"train": 60_000, "test": 10_000}
MEAN, STD = 0.1307, 0.3081
WIDTHS = {"grokalign": [784, 196, 196, 196, 10], "omnigrok": [784, 200, 200, 10]}
BIASED = ("omnigrok",)
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _have_raw_files(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / name).exists() for name in RAW_FILES)


def _mnist_splits(root: Path) -> tuple:
    import torchvision

    if not _have_raw_files(root):
        _download(root)
    train = torchvision.datasets.MNIST(root=str(root), train=True, download=False)
    test = torchvision.datasets.MNIST(root=str(root), train=False, download=False)
    return train, test


def _download(root: Path) -> None:
    """Fetch MNIST once per node: concurrent trials wait on a file lock instead of racing on the files. A download
    that fails leaves nothing behind: no lock file, no empty folders."""
    import torchvision
    from filelock import FileLock

    made = _missing_parents(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the MNIST data directory {root}: {err}") from None
    lock = root / ".mnist-download.lock"
    with FileLock(str(lock)):
        if _have_raw_files(root):
            return
        try:
            torchvision.datasets.MNIST(root=str(root), train=True, download=True)
            torchvision.datasets.MNIST(root=str(root), train=False, download=True)
        except Exception as err:  # torchvision raises RuntimeError/URLError/OSError depending on what failed
            lock.unlink(missing_ok=True)
            _remove_empty([root / "MNIST" / "raw", root / "MNIST", *made])
            reason = " ".join(str(err).split())
            raise DataError(
                f"MNIST is not under {root / 'MNIST' / 'raw'} and could not be downloaded ({reason}). "
                f"Put the four IDX files ({', '.join(RAW_FILES)}) in {root / 'MNIST' / 'raw'}, "
                "or point --data-dir / GROKBENCH_DATA at a directory that holds MNIST/raw/."
            ) from None


def _missing_parents(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    return [p for p in [path, *path.parents] if not p.exists()]


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _prepare(images: torch.Tensor, labels: torch.Tensor, n: int, dtype: torch.dtype) -> tuple:
    x = images[:n].to(dtype).div_(255).sub_(MEAN).div_(STD).reshape(n, -1)
    return x, labels[:n].clone()


@dataclass(frozen=True)
class MnistSettings(Settings):
    train_size: int = setting(1024, "training images: the first of MNIST's training split", neutral=1024)
    test_size: int = setting(1024, "test images: the first of MNIST's test split", neutral=1024)
    noise_std: float = setting(1.0, "robustness probe: Gaussian input noise (normalised pixel units)")
    architecture: str = setting(
        "grokalign",
        "grokalign (784-196-196-196-10, no biases) | omnigrok (784-200-200-10 with biases, Omnigrok's)",
        neutral="grokalign",
    )

    def check(self) -> None:
        one_of("architecture", self.architecture, WIDTHS)
        for name, split in (("train_size", "train"), ("test_size", "test")):
            positive(name, getattr(self, name))
            at_most(name, getattr(self, name), SPLIT_SIZES[split], f"MNIST's {split} split")
        non_negative("noise_std", self.noise_std)


class Mnist(Task):
    name = "mnist"
    description = "MNIST, 1024/1024 points, 784-196-196-196-10 bias-free ReLU MLP, init scale 8 (GrokAlign Table 1)"
    Settings = MnistSettings
    defaults = dict(
        loss="ce",
        init_scale=8.0,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.01,
        batch_size=256,
        max_epochs=100_000,
        eval_every=10,
        dtype="float64",
    )
    losses = ("ce", "mse", "stablemax")
    presets = {
        "omnigrok": dict(
            train_size=1000,
            test_size=10_000,
            architecture="omnigrok",
            loss="mse",
            init_scale=8.0,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.01,
            batch_size=200,
            dtype="float32",
        )
    }
    grok_threshold = 0.85
    # a weight decay off the task's (or preset's) default is named in a trial's row: a weight-decay control (the
    # Omnigrok preset's baseline at Grokfast's 2.0) is a row of its own, not pooled with the baseline
    presentation = Presentation(variants=("weight_decay",))

    def load_data(self, cfg: TrialConfig) -> TaskData:
        train, test = _mnist_splits(data_root(cfg))
        dtype = getattr(torch, cfg.dtype)
        x_train, y_train = _prepare(train.data, train.targets, cfg.task_settings.train_size, dtype)
        x_test, y_test = _prepare(test.data, test.targets, cfg.task_settings.test_size, dtype)
        return TaskData(x_train, y_train, x_test, y_test)

    def build_model(self, cfg: TrialConfig) -> nn.Module:
        architecture = cfg.task_settings.architecture
        model = mlp(WIDTHS[architecture], getattr(torch, cfg.dtype), bias=architecture in BIASED)
        return scale_weights(model, cfg.init_scale)


TASK = Mnist()
