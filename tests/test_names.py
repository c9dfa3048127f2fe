"""Names that become folders (sweep/names.py): every command that takes one refuses a traversal, an absolute path,
an empty, a very long or a control-character name with exit code 2, one line on stderr naming the key and the
allowed characters, and writes nothing at all (inside the working folder or above it). Studies named before the
rule stay readable; the MLflow experiment name may differ from the study name and contain /."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweep import names
from sweep.config.errors import ConfigError

BAD = [("traversal", "../x"), ("traversal-deep", "a/../../b"), ("absolute", "/tmp/x"), ("empty", ""),
       ("long", "a" * 300), ("newline", "a\nb"), ("nul", "a\x00b")]
IDS = [b[0] for b in BAD]
GOOD = ["smoke", "qv_vs_all", "bench_local_w2", "ray_1f3a9c0d", "v1.2-final", "A" * 100]


@pytest.fixture
def deep(tmp_path, monkeypatch):
    """Run two folders below tmp_path, so that a name climbing out (`../x`, `a/../../b`) still lands in tmp_path."""
    here = tmp_path / "w" / "cwd"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    return tmp_path


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _nothing_written(root: Path, absolute_before: bool) -> None:
    assert _listing(root) == ["w", "w/cwd"]  # nothing in the working folder, nothing above it
    assert Path("/tmp/x").exists() == absolute_before


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize("case, value", BAD, ids=IDS)
def test_rule_refuses_with_the_key_and_the_allowed_characters(case, value):
    with pytest.raises(ConfigError) as info:
        names.check_path_name("sweep.study_name", value)
    (line,) = info.value.problems
    assert line.startswith("sweep.study_name: ") and names.ALLOWED in line and "\n" not in line
    assert names.is_path_name(names.folder_for(value))  # the suggested name passes


@pytest.mark.parametrize("value", ["-x", ".hidden", "a b", "C:x", "a\\b", "a..b", "q'uote", "smoke[lora.targets=qv]",
                                   "A" * 101])
def test_rule_refuses_the_rest(value):
    assert names.path_name_problem("k", value) is not None and not names.is_path_name(value)
    assert names.is_path_name(names.folder_for(value))


@pytest.mark.parametrize("value", GOOD)
def test_rule_accepts_plain_names(value):
    assert names.check_path_name("k", value) == value and names.folder_for(value) == value


def test_safe_forms_and_joined_folder():
    assert names.folder_for("team/intent") == "team_intent"
    assert names.folder_for("../../escape") == "escape"
    assert names.folder_for("") == "study"
    long = names.folder_for("a" * 300)
    assert len(long) == names.MAX_LEN and long != names.folder_for("a" * 299)  # a hash of the whole name
    joined = names.joined("multitask-", ["team/intent", "../x", "b" * 300])
    assert "/" not in joined and ".." not in joined and len(joined) <= 150 and joined.startswith("multitask-team_intent+x+")


def test_display_name_may_hold_a_slash_but_not_control_characters():
    assert names.check_display_name("sweep.experiment_name", "team/intent") == "team/intent"
    for bad in ("", "a\nb", "x" * 300):
        with pytest.raises(ConfigError, match=r"^sweep\.experiment_name: "):
            names.check_display_name("sweep.experiment_name", bad)


def test_existing_records_are_read_by_their_exact_name():
    assert names.check_existing_or_path_name("study", "team/intent", lambda: True) == "team/intent"
    with pytest.raises(ConfigError, match="^study: 'team/intent'"):
        names.check_existing_or_path_name("study", "team/intent", lambda: False)
    asked = []
    assert names.check_existing_or_path_name("study", "fine", lambda: asked.append(1)) == "fine" and not asked


# ---------------------------------------------------------------- every command that takes a name


@pytest.mark.parametrize("key", ["sweep.study_name", "name"])
@pytest.mark.parametrize("case, value", BAD, ids=IDS)
def test_sweep_refuses_a_bad_study_name(key, case, value, deep, capsys):
    from sweep.__main__ import main

    absolute = Path("/tmp/x").exists()
    assert main(["+experiment=smoke", "sweep.progress=plain", f"{key}={value}"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {key}: ") and names.ALLOWED in line, line
    _nothing_written(deep, absolute)


def test_sweep_refuses_a_bad_name_even_where_an_old_folder_exists(deep, capsys):
    from sweep.__main__ import main

    (Path("sweeps") / "team" / "intent").mkdir(parents=True)
    assert main(["+experiment=smoke", "sweep.study_name=team/intent"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: sweep.study_name: 'team/intent'") and "sweep.experiment_name" in line
    assert _listing(deep) == ["w", "w/cwd", "w/cwd/sweeps", "w/cwd/sweeps/team", "w/cwd/sweeps/team/intent"]


@pytest.mark.parametrize("case, value", BAD, ids=IDS)
def test_report_refuses_a_bad_study_name(case, value, deep, capsys):
    from sweep.report.__main__ import main

    absolute = Path("/tmp/x").exists()
    assert main([value]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: study: ") and names.ALLOWED in line, line
    _nothing_written(deep, absolute)


@pytest.mark.parametrize("case, value", BAD, ids=IDS)
def test_multitask_refuses_a_bad_study_name(case, value, deep, capsys):
    from sweep.multitask.__main__ import main

    absolute = Path("/tmp/x").exists()
    assert main(["fine", value]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: study: ") and names.ALLOWED in line, line
    _nothing_written(deep, absolute)


@pytest.mark.parametrize("case, value", BAD, ids=IDS)
def test_reproduce_takes_a_hex_hash_never_a_name(case, value, deep, capsys):
    from sweep.reproduce import main

    absolute = Path("/tmp/x").exists()
    assert main([value]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: config-hash prefix ") and "hex characters" in line, line
    _nothing_written(deep, absolute)


# ---------------------------------------------------------------- the experiment name, and studies named before the rule


def test_experiment_name_is_the_mlflow_name_and_defaults_to_the_study():
    from sweep.config.compose import compose
    from sweep.tracking.sweep_run import sweep_tracking

    run = compose(["+experiment=smoke", "sweep.experiment_name=team/smoke"])
    assert (run.study_name, run.experiment_name) == ("smoke", "team/smoke")
    tracking = sweep_tracking(run, run.study_name, "sqlite:///x.db")
    assert (tracking.study, tracking.experiment) == ("smoke", "team/smoke")
    assert compose(["+experiment=smoke"]).experiment_name == "smoke"


@pytest.fixture(scope="module")
def legacy_store(tmp_path_factory):
    """One MLflow store: `team/intent`, a study an older version named with a /; `intent2`, a study of today whose
    MLflow experiment is `team/intent2` (written by the sweep's own SweepTracking)."""
    from test_report import TRIALS, make_store, trial_config, write_trial_run

    from sweep.tracking import tags as T
    from sweep.tracking.sweep_run import SweepTracking

    root = tmp_path_factory.mktemp("legacy")
    tags = {"lorasweep.role": "parent", "lorasweep.study": "team/intent", "lorasweep.objectives": "eval_accuracy",
            "lorasweep.overrides": json.dumps(["+experiment=smoke", "sweep.study_name=team/intent"])}
    uri, _ = make_store(root, trials=TRIALS[:2], study="team/intent", parent_tags=tags)
    tracking = SweepTracking(tracking_uri=uri, artifact_location=str(root / "artifacts"), log_adapter=False,
                             study="intent2", experiment="team/intent2", parent_params={},
                             parent_tags={T.EXPERIMENT: "x", T.OBJECTIVES: "eval_accuracy"})
    tracking.open()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    number, targets, r, seed, status, metrics, reason, reused = TRIALS[0]
    write_trial_run(client, tracking.experiment_id, tracking.parent_run_id, "intent2", number,
                    trial_config(targets, r, seed), status, metrics, reason, reused)
    tracking.close(interrupted=False)
    return uri, root


def test_new_study_experiment_keeps_its_artifacts_under_the_study_folder(legacy_store):
    from mlflow.tracking import MlflowClient

    uri, root = legacy_store
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name("team/intent2")
    assert exp is not None and exp.artifact_location == (root / "artifacts" / "intent2").resolve().as_uri()


def test_report_reads_a_study_named_before_the_rule_and_writes_it_safely(legacy_store, tmp_path, capsys):
    from sweep.report.__main__ import main

    uri, _ = legacy_store
    assert main(["team/intent", "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "team_intent" / "report.md").is_file() and not (tmp_path / "team").exists()
    assert "note: study 'team/intent' is not a safe folder name" in captured.err
    assert "no longer composes" not in captured.err  # its recorded sweep.study_name=team/intent is left out
    assert main(["../x", "--tracking-uri", uri, "--out", str(tmp_path)]) == 2  # a store, but no such study
    assert _one_error_line(capsys).startswith("error: study: '../x'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["team_intent"]


@pytest.mark.parametrize("given", ["intent2", "team/intent2"])
def test_report_finds_a_study_by_its_name_or_its_experiment_name(given, legacy_store, tmp_path, capsys):
    from sweep.report.__main__ import main
    from sweep.report.load import load_study, study_exists

    uri, _ = legacy_store
    study = load_study(given, uri)
    assert (study.name, study.experiment_name) == ("intent2", "team/intent2")
    assert study_exists(given, uri) and study_exists("team/intent", uri) and not study_exists("../x", uri)
    assert main([given, "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["intent2"] and not capsys.readouterr().err


def test_multitask_reads_a_study_named_before_the_rule(legacy_store, tmp_path, capsys):
    """The name passes (the study exists); the study then fails for want of adapter files, not for its name."""
    from sweep.multitask.__main__ import main

    uri, _ = legacy_store
    assert main(["team/intent", "intent2", "--tracking-uri", uri, "--out", str(tmp_path), "--no-memory"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: study 'team/intent'") and "adapter" in line, line
    assert not list(tmp_path.iterdir())
