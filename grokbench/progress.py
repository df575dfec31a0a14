"""Live progress of one trial on the terminal (stderr), and its closing summary."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from grokbench.tasks import TASKS
from grokbench.train import Evaluation, Trial

NON_TTY_INTERVAL_S = 30.0  # in logs, one line per this many seconds instead of a line redrawn in place


def duration(seconds: float) -> str:
    """A clock's reading of a span: '0:17', '1:02', '1:02:05' (the one format every progress line uses)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def counted(n: int, noun: str) -> str:
    """'1 trial', '2 trials': a count and its noun, for the lines a sweep prints."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Progress:
    """A trial callback: epoch, accuracies, loss, rate and an ETA to the end of the budget."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.perf_counter()
        self.first_epoch: int | None = None
        self.last_printed = 0.0

    def __call__(self, ev: Evaluation, trial: Trial) -> None:
        now = time.perf_counter()
        if self.first_epoch is None:
            self.first_epoch = ev.epoch
        rate = (ev.epoch - self.first_epoch) / max(now - self.started, 1e-9)
        remaining = trial.last_epoch() - ev.epoch
        eta = duration(remaining / rate) if rate > 0 else "?"
        m = ev.metrics
        line = (
            f"epoch {ev.epoch:>6}/{trial.last_epoch()}  step {ev.step:>7}  "
            + "".join(f"{label} {m[name]:{spec}}  " for label, name, spec in trial.task.progress_figures)
            + f"{rate:.1f} ep/s  ETA ≤{eta}"
        )
        if self.live:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif now - self.last_printed >= NON_TTY_INTERVAL_S:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_printed = now

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


def format_summary(summary: dict[str, Any]) -> str:
    def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
        if value is None:
            return "—"
        return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"

    s = summary
    lines = [
        f"{s['task']} · {s['method']} (λ={s['lam']:g}) · lr {s['lr']:g} · loss {s['loss']} "
        f"· init ×{s['init_scale']:g} · seed {s['seed']}",
        f"status          {s['status']}",
        f"memorised at    step {fmt(s['steps_to_memorise'])} (epoch {fmt(s['epochs_to_memorise'])}), "
        f"{fmt(s['time_to_memorise_s'], ' s')}",
        f"grokked at      step {fmt(s['steps_to_grok'])} (epoch {fmt(s['epochs_to_grok'])}), "
        f"{fmt(s['time_to_grok_s'], ' s')}",
        f"trained         {s['steps']} steps ({s['epochs']} epochs), {s['train_time_s']:.1f} s of updates",
    ]
    finals = [f"{name} {fmt(s[f'final_{name}'], digits=4)}" for name in TASKS[s["task"]].final_metrics]
    if finals:
        lines.append(f"final           {'  '.join(finals)}")
    if s["grokked_before_memorised"]:
        lines.append("note            grokked before it memorised: grokking phase time set to 0")
    return "\n".join(lines)
