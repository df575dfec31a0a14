"""analysis.delay: the memorise→grok delay per method and init scale, from hand-made runs checked by hand."""

import numpy as np
import pandas as pd

from analysis.delay import delay_table
from analysis.output import to_frame

NAN = np.nan


def runs():
    rows = [  # method, init, status, steps to memorise, steps to grok, steps run
        ("baseline", 1.0, "grokked", 100, 140, 140),
        ("baseline", 1.0, "grokked", 200, 240, 240),
        ("baseline", 1.0, "grokked", 300, 340, 340),
        ("baseline", 8.0, "grokked", 400, 2400, 2400),
        ("baseline", 8.0, "grokked", 400, 3400, 3400),
        ("baseline", 8.0, "censored", 400, NAN, 10000),
        ("grokalign", 1.0, "grokked", 300, 200, 200),  # grokked before it memorised
        ("grokalign", 1.0, "grokked", NAN, 100, 100),  # grokked, never memorised
        ("grokalign", 8.0, "grokked", 400, 800, 800),
        ("grokalign", 8.0, "grokked", 400, 1200, 1200),
        ("grokalign", 8.0, "grokked", 400, 1600, 1600),
        ("grokalign", 8.0, "diverged", 400, NAN, 50),  # counted apart, as in every table
    ]
    frame = pd.DataFrame(
        rows, columns=["method", "init_scale", "status", "steps_to_memorise", "steps_to_grok", "steps"]
    )
    # 4 updates an epoch, evaluated every 10 epochs (40 updates)
    return frame.assign(
        task="mnist",
        lam=0.0,
        loss="ce",
        eval_every=10.0,
        epochs_to_memorise=frame["steps_to_memorise"] / 4,
        epochs_to_grok=frame["steps_to_grok"] / 4,
    )


def rows():
    table = delay_table(runs())
    return {(r[0], r[2]): dict(zip(table.headers, r, strict=True)) for r in table.rows}


def test_delay_is_grok_minus_memorise_with_censored_seeds_by_kaplan_meier():
    by = rows()
    assert by[("Baseline", "1")]["delay (steps)"] == "40 ± 0 (med 40)"
    # α = 8: 2000, 3000 and one censored at 10000 − 400 = 9600: survival 2/3, then 1/3 at 3000
    assert by[("Baseline", "8")]["delay (steps)"] == "KM med 3,000 (1 censored)"
    assert by[("Baseline", "8")]["grokked"] == "2/3"
    assert by[("GrokAlign", "8")]["delay (steps)"] == "800 ± 4e+02 (med 800)"  # 400, 800, 1200; the diverged apart


def test_no_delay_counts_seeds_that_grokked_within_one_evaluation_of_memorising():
    by = rows()
    assert by[("Baseline", "1")]["no delay"] == "3/3"  # 40 updates = 10 epochs = one evaluation
    assert by[("GrokAlign", "1")]["no delay"] == "2/2"  # before memorising, or without it
    assert by[("Baseline", "8")]["no delay"] == "0/3"
    assert by[("GrokAlign", "1")]["steps to memorise"].startswith("1/2: ")


def test_without_an_evaluation_interval_only_grokking_before_memorising_counts():
    table = delay_table(runs().assign(eval_every=np.nan))
    by = {(r[0], r[2]): r[6] for r in table.rows}
    assert by[("GrokAlign", "1")] == "2/2" and by[("Baseline", "1")] == "0/3"


def test_against_a_censored_baseline_the_ratio_is_a_bound():
    slow = runs()
    slow.loc[(slow["method"] == "baseline") & (slow["init_scale"] == 8.0), ["status", "steps"]] = ["censored", 10000]
    by = {(r[0], r[2]): r[-1] for r in delay_table(slow).rows}
    assert by[("GrokAlign", "8")] == f"≤ {800 / 9600:.3g}"  # the baseline's delay exceeds 10000 − 400


def test_the_ratio_to_the_baseline_is_of_medians_at_the_same_init():
    by = rows()
    assert by[("GrokAlign", "8")]["delay ÷ baseline's"] == "0.267"  # 800 / 3000
    assert by[("GrokAlign", "1")]["delay ÷ baseline's"] == "0"  # 0 / 40
    assert by[("Baseline", "8")]["delay ÷ baseline's"] == "—"


def test_the_csv_adds_only_plain_machine_readable_columns():
    table = delay_table(runs())
    frame = to_frame(table)
    assert list(frame.columns[len(table.headers) :]) == ["method", "delay_median", "delay_median_is_bound"]
    rows = frame.set_index(["Method", "init"])
    assert rows.loc[("GrokAlign", "8"), "delay_median"] == 800
    assert not rows.loc[("GrokAlign", "8"), "delay_median_is_bound"]


def test_a_delay_whose_curve_never_falls_to_half_is_marked_a_bound():
    slow = runs()
    slow.loc[(slow["method"] == "baseline") & (slow["init_scale"] == 8.0), ["status", "steps"]] = ["censored", 10000]
    rows = to_frame(delay_table(slow)).set_index(["Method", "init"])
    # every α = 8 baseline seed censored 9600 updates after memorising: the median is only known to exceed that
    assert rows.loc[("Baseline", "8"), "delay_median"] == 9600
    assert rows.loc[("Baseline", "8"), "delay_median_is_bound"]


def test_a_single_init_scale_makes_no_table():
    assert delay_table(runs()[runs()["init_scale"] == 8.0]) is None
