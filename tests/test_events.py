"""Memorised / grokked / censored detection on scripted accuracy sequences."""

from grokbench.events import AccuracyCriterion, GrokEvents, Milestone


def replay(train_test_pairs, threshold=0.85):
    events = GrokEvents(AccuracyCriterion(threshold))
    for i, (train, test) in enumerate(train_test_pairs):
        events.update(Milestone(step=40 * i, epoch=10 * i, time_s=float(i)), {"train_acc": train, "test_acc": test})
    return events


def test_memorise_then_grok():
    events = replay([(0.5, 0.1), (0.98, 0.3), (0.99, 0.4), (1.0, 0.85), (1.0, 0.86), (1.0, 0.95)])
    assert events.memorised == Milestone(80, 20, 2.0)  # ≥ 0.99
    assert events.grokked == Milestone(160, 40, 4.0)  # strictly > 0.85
    s = events.summary()
    assert s["grok_phase_time_s"] == 2.0 and not s["grokked_before_memorised"]


def test_never_grokking_is_censored_with_null_grok_figures():
    s = replay([(0.5, 0.1), (1.0, 0.5), (1.0, 0.85)]).summary()
    assert s["steps_to_memorise"] == 40
    assert s["steps_to_grok"] is None and s["time_to_grok_s"] is None and s["grok_phase_time_s"] is None


def test_grokking_before_memorising_is_flagged_with_zero_phase_time():
    events = replay([(0.5, 0.1), (0.9, 0.9), (0.995, 0.95)])
    assert events.grokked.step == 40 and events.memorised.step == 80
    assert events.grokked_before_memorised and events.grok_phase_time_s == 0.0


def test_events_round_trip_through_state():
    events = replay([(1.0, 0.1), (1.0, 0.9)])
    assert GrokEvents.from_state(events.criterion, events.state_dict()) == events
