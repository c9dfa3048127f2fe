"""Budgets in the search (sweep.memory_budget_mb, sweep.max_trainable_params): a config over one is ruled out before
training, on the coordinator: never handed to a worker, recorded with its verdict, told to Optuna as infeasible
(PRUNED with a constraint violation), not counted toward n_trials, listed by the summary and the report. On the
in-process pool (tests/test_dispatch.py) with the real coordinator, storage and planner; the smoke grid's
trainable parameters and planned memory are read off the planner itself, so the thresholds follow it."""

from __future__ import annotations

import optuna
import pytest

from sweep.config.compose import compose
from sweep.config.errors import ConfigError
from sweep.orchestration import records as R
from sweep.orchestration.protocol import TrialTask
from sweep.plan.budget import MEMORY, PARAMS, Budget, Verdict, rule_out
from sweep.plan.build import trainable_params
from sweep.plan.memory import num_labels_of, plan_memory
from test_dispatch import SMOKE, Runner, score, sweep, trials

C = optuna.trial.TrialState
GRID = [(t, r) for t in ("qv", "all_linear") for r in (1, 2, 4)]  # the smoke experiment's grid


def smoke_cfg(targets: str, r: int):
    return compose([*SMOKE, f"lora.targets={targets}", f"lora.r={r}"]).trial


@pytest.fixture(scope="module")
def grid_facts():
    """(trainable params, planned total MiB) of each smoke grid point."""
    labels = num_labels_of(smoke_cfg("qv", 1))[0]  # the data's, as the trial's head has them
    return {(t, r): (trainable_params(smoke_cfg(t, r), labels), plan_memory(smoke_cfg(t, r)).total_mb) for t, r in GRID}


def test_memory_budget_takes_mib_a_size_or_a_gpu_id():
    def budget(v):
        return Budget.of(compose([*SMOKE, f"sweep.memory_budget_mb={v}"]).sweep)

    assert budget(24576).memory_mb == 24576.0
    assert budget("24GiB").memory_mb == 24576.0 and budget("24GiB").memory_label == "24.0 GiB"
    l4 = budget("l4")
    assert l4.memory_mb == 23034.0 and l4.compute_capability == (8, 9) and "NVIDIA L4" in l4.memory_label
    assert not Budget.of(compose(SMOKE).sweep).active
    for bad in ("lots", "0", "-5", "true"):
        with pytest.raises(ConfigError) as e:
            compose([*SMOKE, f"sweep.memory_budget_mb={bad}"])
        assert len(e.value.problems) == 1 and e.value.problems[0].startswith("sweep.memory_budget_mb:"), bad
    with pytest.raises(ConfigError, match="sweep.max_trainable_params"):
        compose([*SMOKE, "sweep.max_trainable_params=0"])


def test_verdicts_name_the_budget_and_how_far_over(grid_facts):
    cfg = smoke_cfg("all_linear", 4)
    params, total = grid_facts[("all_linear", 4)]
    assert rule_out(cfg, Budget(max_trainable_params=params)) is None  # at the budget is within it
    v = rule_out(cfg, Budget(max_trainable_params=params - 1))
    assert v.constraint == PARAMS and v.trainable_params == params and v.violation == pytest.approx(1 / (params - 1))
    assert "sweep.max_trainable_params" in v.reason and "\n" not in v.reason
    assert rule_out(cfg, Budget(memory_mb=total + 0.01, memory_label="x")) is None
    v = rule_out(cfg, Budget(memory_mb=total / 2, memory_label=f"{total / 2:.0f} MiB"))
    assert v.constraint == MEMORY and v.predicted == pytest.approx(total) and v.violation == pytest.approx(1.0)
    assert v.reason.startswith(f"does not fit in {total / 2:.0f} MiB: predicted") and "of which activations" in v.reason
    assert v.allocator_peak_mb == pytest.approx(plan_memory(cfg).allocator_peak_mb)
    assert Verdict.of(v.stored()) == v
    assert set(v.metrics()) == {"trainable_params", "predicted_peak_memory_mb"}


def test_params_budget_rules_out_grid_points_before_any_worker_sees_them(tmp_path, grid_facts):
    """qv r=4, all_linear r=2 and r=4 exceed the budget: the three others train, the three over it are recorded and
    never run, and the grid (two question arms) ends at 3 finished trials instead of asking for the rest forever."""
    cap = grid_facts[("all_linear", 1)][0]
    over = {k for k, (p, _) in grid_facts.items() if p > cap}
    assert over == {("qv", 4), ("all_linear", 2), ("all_linear", 4)}
    runner = Runner()
    summary, pool = sweep(tmp_path, f"sweep.max_trainable_params={cap}", runner=runner)
    ts = trials(tmp_path)
    ran = {(t.config["lora"]["targets"], t.config["lora"]["r"]) for _, t in pool.submitted if isinstance(t, TrialTask)}
    assert ran == set(GRID) - over and len(runner.ran) == 3
    assert (summary.n_complete, summary.n_pruned, summary.n_failed, summary.n_infeasible) == (3, 0, 0, 3)  # not pruned: never trained
    ruled = [t for t in ts.values() if R.INFEASIBLE in t.user_attrs]
    assert len(ruled) == 3 and all(t.state == C.PRUNED for t in ruled) and len(ts) == 6
    for t in ruled:
        v = Verdict.of(R.TrialRecord.of(t).infeasible)
        assert v.constraint == PARAMS and t.constraints == {PARAMS: pytest.approx(v.violation)} and v.violation > 0
        assert (t.params["lora.targets"], t.params["lora.r"]) in over
        assert R.TrialRecord.of(t).config_hash  # looked up like any trial
    # the arm study's mirror trial carries the same constraint (its TPE/NSGA-II sampler reads it there)
    arm = optuna.load_study(study_name="smoke[lora.targets=all_linear]", storage=f"sqlite:///{tmp_path / 'sweeps/smoke/study.db'}")
    mirrored = [t for t in arm.get_trials() if t.constraints]
    assert len(mirrored) == 2 and all(t.state == C.PRUNED and R.INFEASIBLE in t.user_attrs for t in mirrored)
    # a rerun has nothing to do: the ruled-out points are not asked again, nothing trains
    again, _ = sweep(tmp_path, f"sweep.max_trainable_params={cap}", runner=runner)
    assert len(runner.ran) == 3 and len(trials(tmp_path)) == 6 and again.n_infeasible == 3


def test_tpe_ruled_out_proposals_do_not_fill_n_trials(tmp_path, grid_facts):
    """A sampled space (TPE, no arms) where r=4 is over budget: n_trials trained trials are reached, every r=4
    proposal is recorded untrained, and TPE is told each is infeasible."""
    cap = grid_facts[("qv", 2)][0]
    runner = Runner()
    from sweep.config.run_schema import ParamSpec

    space = {"lora.r": ParamSpec(type="categorical", choices=[1, 2, 4]),
             "lora.dropout": ParamSpec(type="float", low=0.0, high=0.2)}
    summary, _ = sweep(tmp_path, "sweep.sampler=tpe", "sweep.n_startup_trials=2", "sweep.n_trials=5",
                       "sweep.group_by=[]", "lora.targets=qv", f"sweep.max_trainable_params={cap}", runner=runner,
                       workers=1, space=space)
    ts = trials(tmp_path).values()
    trained = [t for t in ts if R.INFEASIBLE not in t.user_attrs]
    ruled = [t for t in ts if R.INFEASIBLE in t.user_attrs]
    assert summary.n_complete == 5 and len(runner.ran) == 5 and all(t.params["lora.r"] != 4 for t in trained)
    assert summary.n_infeasible == len(ruled) and all(t.params["lora.r"] == 4 and t.constraints for t in ruled)


def test_sweep_stops_when_every_proposal_is_ruled_out(tmp_path, monkeypatch, grid_facts):
    """A space that barely fits: after RULED_OUT_IN_A_ROW proposals in a row are ruled out the sweep stops, saying
    why, with what it has; none of them is a failure."""
    import sweep.orchestration.dispatch as dispatch

    monkeypatch.setattr(dispatch, "RULED_OUT_IN_A_ROW", 3)
    monkeypatch.setattr("sweep.orchestration.preflight.check_budget", lambda run, sample=24: [])
    cap = grid_facts[("qv", 1)][0] - 1  # nothing fits
    runner = Runner()
    summary, _ = sweep(tmp_path, "sweep.sampler=random", "sweep.group_by=[]", f"sweep.max_trainable_params={cap}",
                       runner=runner, workers=1)
    assert runner.ran == [] and summary.n_failed == 0 and summary.n_infeasible == 3 and summary.n_complete == 0


def test_preflight_refuses_a_space_where_nothing_fits_and_warns_about_part(grid_facts):
    from sweep.orchestration.preflight import check_budget

    smallest = min(total for _, total in grid_facts.values())
    run = compose([*SMOKE, f"sweep.memory_budget_mb={smallest / 2}"])
    with pytest.raises(ConfigError) as e:
        check_budget(run)
    (line,) = e.value.problems
    assert line.startswith("sweep.memory_budget_mb: none of 6 configs (the whole grid) is within the budget")
    assert "python -m sweep.plan" in line
    qv = max(total for (t, _), (_, total) in grid_facts.items() if t == "qv")
    warnings = check_budget(compose([*SMOKE, f"sweep.memory_budget_mb={qv + 0.001}"]))
    assert len(warnings) == 1 and warnings[0].startswith("sweep.memory_budget_mb: 3 of 6 configs (the whole grid)")
    assert check_budget(compose(SMOKE)) == []


def test_memory_budget_in_mlflow_and_the_report(tmp_path, monkeypatch, grid_facts):
    """With MLflow: each ruled-out config gets a run (status INFEASIBLE, its reason and prediction), which the
    coordinator's reconciliation leaves as it is, and the report lists it apart from every result table."""
    import sweep.trial as sweep_trial
    from sweep.config.cost import CostConfig
    from sweep.orchestration.protocol import Placement
    from sweep.orchestration.worker import execute
    from sweep.report.load import load_study
    from sweep.report.render import build_report
    from sweep.tracking import tags as T
    from sweep.tracking.mlflow_tracker import search_runs

    qv = max(total for (t, _), (_, total) in grid_facts.items() if t == "qv")
    budget = (qv + min(total for (t, _), (_, total) in grid_facts.items() if t == "all_linear")) / 2
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def tracked(task):  # the worker's own path around an instant trial: it opens and closes the MLflow run
        result = score(task)
        monkeypatch.setattr(sweep_trial, "run_trial", lambda cfg, **kw: result)
        return execute(task, wid=0, send=lambda ev: None, ask_prune=lambda *a: False, where=Placement.here(None))

    overrides = ["tracking=mlflow", f"tracking.tracking_uri={uri}", f"tracking.artifact_location={tmp_path / 'art'}",
                 "tracking.log_adapter=false", f"sweep.memory_budget_mb={budget}", "sweep.baseline=false"]
    summary, _ = sweep(tmp_path, *overrides, runner=tracked)
    assert (summary.n_complete, summary.n_infeasible) == (3, 3)
    sweep(tmp_path, *overrides, runner=tracked)  # a rerun reconciles MLflow with Optuna: INFEASIBLE stays
    study = load_study("smoke", uri)
    assert len(study.trials) == 3 and set(study.trials["lora.targets"]) == {"qv"}
    assert len(study.ruled_out) == 3 and set(study.ruled_out["status"]) == {T.INFEASIBLE}
    assert all(r.startswith(f"does not fit in {budget:,.0f} MiB") for r in study.ruled_out["failure_reason"])
    assert study.ruled_out["predicted_peak_memory_mb"].notna().all()
    runs = search_runs(uri, [study.experiment_id], T.role_filter(T.ROLE_TRIAL), frame=False)
    assert sorted(r.info.status for r in runs if r.data.tags[T.STATUS] == T.INFEASIBLE) == ["FINISHED"] * 3
    files = build_report("smoke", CostConfig(price_per_device_hour=3.6, value_per_accuracy_point_per_month=1.0), uri,
                         tmp_path / "reports")
    text = files.markdown.read_text()
    assert "## Ruled out before training" in text and text.count("does not fit in") == 3
    assert "and 3 configs ruled out before training by the budgets" in text


def test_an_arm_where_nothing_fits_closes_and_the_others_fill(tmp_path, grid_facts):
    """Two question arms, random sampler: every all_linear config is over the parameter budget. That arm closes
    after its ruled-out proposals (Arms.capacities), the qv arm gets its whole budget, and the sweep ends rather
    than stopping on the ruled-out proposals in a row."""
    from sweep.config.run_schema import ParamSpec

    cap = grid_facts[("qv", 4)][0]
    assert grid_facts[("all_linear", 2)][0] > cap  # every all_linear config (r = 2, 4) is over it
    space = {"lora.targets": ParamSpec(type="categorical", choices=["qv", "all_linear"]),
             "lora.r": ParamSpec(type="categorical", choices=[2, 4]),
             "lora.dropout": ParamSpec(type="float", low=0.0, high=0.2)}
    runner = Runner()
    summary, _ = sweep(tmp_path, "sweep.sampler=random", "sweep.n_trials=10", f"sweep.max_trainable_params={cap}",
                       runner=runner, workers=1, space=space)
    ts = trials(tmp_path).values()
    trained = [t for t in ts if R.INFEASIBLE not in t.user_attrs]
    assert summary.n_complete == 5 and len(runner.ran) == 5 and {t.params["lora.targets"] for t in trained} == {"qv"}
    assert summary.n_infeasible == 25 and summary.n_failed == 0  # the arm closes after max(20, 5 x its budget 5)


def test_a_trial_left_running_while_being_ruled_out_is_settled_pruned(tmp_path):
    """The coordinator died between storing the verdict and telling Optuna: the rerun tells it PRUNED (ruled out),
    neither failed nor retried."""
    import socket

    from sweep.orchestration.recovery import Recovery
    from sweep.orchestration.study import INFEASIBLE, SweepStudy
    from sweep.tracking.sweep_run import NullSweepTracking

    run = compose([*SMOKE, "sweep.retry_failed=2"])
    study = SweepStudy(run.sweep, "s", f"sqlite:///{tmp_path / 'study.db'}")
    n = study.study.ask().number
    study.claim(n, f"{socket.gethostname()}:999999999")  # a pid that is not alive
    study.set_infeasible(n, Verdict(PARAMS, "over budget", 1.0, 1.0, 2.0, 2).stored())
    rec = Recovery(study, NullSweepTracking(), retry_failed=2, objectives=["eval_accuracy"], out_dir=tmp_path,
                   log=lambda *_: None)
    assert rec.settle_orphans(60) == 1
    assert study.trial(n).state == C.PRUNED and study.counts()[INFEASIBLE] == 1 and study.counts()["WAITING"] == 0
