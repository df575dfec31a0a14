"""Runs logged straight to a real MLflow store with known values, for the tests of what reads them back (the
analysis tables and figures, the tracking store)."""

from mlflow.entities import Metric, Param, RunTag

SWEEP = "table-test-1"


def log_trial(
    client,
    experiment_id,
    method,
    loss,
    seed,
    status,
    steps,
    time_s,
    memorised_time_s=1.0,
    lam=0.0,
    budget_steps=1000,
    budget_time=100.0,
    curve=True,
    **settings,
):
    variant = "".join(f"-{v}" for v in settings.values())
    tags = {
        "grokbench.sweep_id": SWEEP,
        "grokbench.trial_key": f"{method}-{loss}-{seed}{variant}",
        "status": status,
        "method": method,
        "loss": loss,
    }
    run = client.create_run(experiment_id, tags=tags)
    params = {
        "method": method,
        "loss": loss,
        "seed": seed,
        "lam": lam,
        "init_scale": 8.0,
        "task": "mnist",
        "max_epochs": budget_steps // 4,
        **settings,
    }
    grokked = status == "grokked"
    metrics = {
        "steps": steps if grokked else budget_steps,
        "train_time_s": time_s if grokked else budget_time,
        "steps_to_memorise": 40,
        "time_to_memorise_s": memorised_time_s,
        "epochs_to_memorise": 10,
    }
    metrics["epochs"] = metrics["steps"] // 4
    if grokked:
        metrics.update(
            steps_to_grok=steps,
            time_to_grok_s=time_s,
            grok_phase_time_s=time_s - memorised_time_s,
            epochs_to_grok=steps // 4,
        )
    now = 0
    entries = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    if curve:
        last = int(metrics["steps"])
        for step in (0, 40, last):
            entries += [
                Metric("train_acc", 1.0 if step else 0.1, now, step),
                Metric("test_acc", 0.9 if step == last and grokked else 0.5, now, step),
                Metric("train_time_s", metrics["train_time_s"] * step / max(last, 1), now, step),
                Metric("centroid_alignment", 0.1 + step / 1e4, now, step),
                Metric("jacobian_norm", 10.0 - step / 1e3, now, step),
            ]
    client.log_batch(
        run.info.run_id, metrics=entries, params=[Param(k, str(v)) for k, v in params.items()], tags=[RunTag("x", "y")]
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id
