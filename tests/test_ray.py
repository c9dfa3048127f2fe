"""The Ray backend on a real two-node Ray cluster and a real MLflow server, both on loopback (.ci/ray_cluster.py).

.ci/run starts them and sets LORASWEEP_TEST_RAY_ADDRESS / _MLFLOW_URI / _CLUSTER_DIR (and the cluster's token);
without those variables the first test that needs them starts its own through the same script. Each node has one
CPU and two logical GPUs: Ray assigns GPU ids and CUDA_VISIBLE_DEVICES without a GPU being present.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import os
import signal
import subprocess
import tempfile
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest

from sweep.config.compose import compose
from sweep.orchestration.coordinator import Coordinator

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "ray_cluster.py"
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install -e '.[ray]'; make test installs it)")
C = optuna.trial.TrialState


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """{'ray': address, 'mlflow': uri, 'dir': folder} of the test cluster, started here if .ci/run did not."""
    env = {k: os.environ.get(f"LORASWEEP_TEST_{k.upper()}") for k in ("ray_address", "mlflow_uri", "cluster_dir")}
    if all(env.values()):
        yield {"ray": env["ray_address"], "mlflow": env["mlflow_uri"], "dir": env["cluster_dir"]}
        return
    # a short folder: Ray's socket paths under it must stay within AF_UNIX's 107 bytes (pytest's tmp paths do not)
    folder = Path(tempfile.mkdtemp(prefix="lsray-", dir="/tmp"))
    out = subprocess.run([sys.executable, str(SCRIPT), "start", str(folder)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    got = dict(line.split("=", 1) for line in out.stdout.split())
    auth = {k: got[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}  # the cluster's own token: every driver needs it
    before = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    try:
        yield {"ray": got["LORASWEEP_TEST_RAY_ADDRESS"], "mlflow": got["LORASWEEP_TEST_MLFLOW_URI"], "dir": str(folder)}
    finally:
        subprocess.run([sys.executable, str(SCRIPT), "stop", str(folder)], timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
        for k, v in before.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _ray_sweep(cluster, study: str, *extra: str):
    # the test cluster's GPUs are logical (no GPU on this machine): the trials train on the CPU, said so
    return compose(["+experiment=smoke", "sweep.backend=ray", "train.device=cpu", f"sweep.ray.address={cluster['ray']}", "sweep.progress=plain",
                    f"sweep.study_name={study}", f"tracking.tracking_uri={cluster['mlflow']}", *extra])


def _client(cluster):
    from mlflow.tracking import MlflowClient

    return MlflowClient(cluster["mlflow"])


def _trial_runs(cluster, study: str):
    c = _client(cluster)
    runs = c.search_runs([c.get_experiment_by_name(study).experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("lorasweep.role") == "trial"]


def _study(study: str):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{Path('sweeps', study, 'study.db').resolve()}")


def _script(*args: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


# ------------------------------------------------------------------ without a cluster
def test_local_backend_never_imports_ray(in_tmp):
    code = ("import sys; from sweep.config.compose import compose; from sweep.orchestration.coordinator import make_pool; "
            "from sweep.orchestration.preflight import preflight; import sweep.__main__; "
            "run = compose(['+experiment=smoke', 'tracking=none']); preflight(run); make_pool(run, print); "
            "print('ray' in sys.modules, any(m.startswith('ray.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout


def test_unreachable_ray_address_is_a_one_line_error_before_anything_is_written(in_tmp):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    out = subprocess.run([sys.executable, "-m", "sweep", "+experiment=smoke", "sweep.backend=ray", "train.device=cpu",
                          f"sweep.ray.address=127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: sweep.ray.address: nothing answers at 127.0.0.1:{port}"), out.stderr
    assert not Path("sweeps").exists() and not Path(".mlflow").exists()


def test_actor_plan_fills_the_cluster():
    from sweep.orchestration.ray_connect import plan_actors

    gpus = {"CPU": 2.0, "GPU": 4.0}
    assert (p := plan_actors("auto", 1, 1.0, 0, gpus)).count == 4 and p.resources == {"num_gpus": 1.0, "num_cpus": 0.0}
    assert (p := plan_actors("auto", 2, 1.0, 0, gpus)).count == 8 and p.resources["num_gpus"] == 0.5
    assert plan_actors(3, 1, 1.0, 0, gpus).count == 3
    cpus = {"CPU": 16.0}
    assert (p := plan_actors("auto", 1, 4.0, 0, cpus)).count == 4 and p.resources == {"num_cpus": 4.0} and p.threads == 4
    assert plan_actors("auto", 1, 32.0, 0, cpus).count == 1 and plan_actors("auto", 1, 1.0, 2, cpus).threads == 2


def test_bad_ray_address_is_named():
    from sweep.config.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sweep\.ray\.address: must be auto, local, host:port or ray://host:port"):
        compose(["sweep.backend=ray", "sweep.ray.address=head-node"])
    for good in ("auto", "local", "10.0.0.5:6379", "ray://head:10001", "'[::1]:6379'"):
        assert compose([f"sweep.ray.address={good}"]).sweep.ray.address == good.strip("'")


# ------------------------------------------------------------------ on the two-node cluster
@pytest.fixture(scope="module")
def ray_sweep(cluster, tmp_path_factory):
    """One sweep on the cluster (workers=auto: one actor per logical GPU), shared by the tests below."""
    folder = tmp_path_factory.mktemp("ray-sweep")
    study = f"ray_{uuid.uuid4().hex[:8]}"
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        summary = Coordinator(_ray_sweep(cluster, study, "sweep.workers=auto")).run()
        trials = _study(study).get_trials()
    finally:
        os.chdir(cwd)
    return {"study": study, "folder": folder, "summary": summary, "trials": trials}


@needs_ray
@pytest.mark.slow
def test_sweep_places_trials_on_both_nodes_one_gpu_each(cluster, ray_sweep):
    trials = ray_sweep["trials"]
    assert ray_sweep["summary"].n_complete == 6 and [t.state for t in trials] == [C.COMPLETE] * 6
    runs = _trial_runs(cluster, ray_sweep["study"])
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
    nodes = {r.data.tags["lorasweep.node_id"] for r in runs}
    assert len(nodes) == 2 and all(len(n) == 56 for n in nodes), nodes  # both nodes, Ray node ids
    assert {r.data.tags["lorasweep.gpu"] for r in runs} <= {"0", "1"}  # one logical GPU per actor
    for r in runs:
        t = next(t for t in trials if t.number == int(r.data.tags["lorasweep.trial_number"]))
        folder = ray_sweep["folder"] / "sweeps" / ray_sweep["study"] / "trials" / f"{t.number:04d}-{t.user_attrs['config_hash']}"
        placement = json.loads((folder / "meta.json").read_text())["placement"]
        assert placement["node_id"] == r.data.tags["lorasweep.node_id"] and placement["gpu"] == r.data.tags["lorasweep.gpu"]
        assert placement["host"] == r.data.tags["lorasweep.host"]


@needs_ray
@pytest.mark.slow
def test_trial_folders_written_here_and_every_artifact_readable_through_the_server(cluster, ray_sweep, tmp_path):
    c = _client(cluster)
    for t in ray_sweep["trials"]:
        folder = ray_sweep["folder"] / "sweeps" / ray_sweep["study"] / "trials" / f"{t.number:04d}-{t.user_attrs['config_hash']}"
        result = json.loads((folder / "result.json").read_text())
        assert result["status"] == "COMPLETE" and result["output_dir"] == str(folder)
        assert (folder / "config.yaml").is_file() and (folder / "meta.json").is_file()
        artifacts = json.loads((folder / "artifacts.json").read_text())
        assert artifacts["artifact_uri"].startswith("mlflow-artifacts:/")  # the server's store, not a folder anywhere
        run_id = artifacts["run_id"]
        assert run_id == t.user_attrs["mlflow_run_id"]
        got = {}
        for name in ("config.yaml", "result.json", "meta.json", "adapter/adapter_model.safetensors"):
            got[name] = Path(c.download_artifacts(run_id, name, str(tmp_path / run_id / name.replace("/", "_"))))
            assert got[name].is_file() and got[name].stat().st_size > 0, name
        assert got["adapter/adapter_model.safetensors"].read_bytes() == (folder / "adapter" / "adapter_model.safetensors").read_bytes()
        assert got["config.yaml"].read_text() == (folder / "config.yaml").read_text()


@needs_ray
@pytest.mark.slow
def test_report_and_reproduce_from_the_mlflow_server_alone(cluster, ray_sweep, tmp_path):
    env = {**os.environ, "LORASWEEP_FAULTS": ""}
    report = subprocess.run([sys.executable, "-m", "sweep.report", ray_sweep["study"], "--tracking-uri", cluster["mlflow"]],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert report.returncode == 0, report.stdout + report.stderr
    import pandas as pd

    frame = pd.read_csv(tmp_path / "reports" / ray_sweep["study"] / "trials.csv")
    assert frame["node_id"].nunique() == 2  # the report can group by node
    assert "By node_id" in (tmp_path / "reports" / ray_sweep["study"] / "report.md").read_text()
    best = ray_sweep["trials"][0].user_attrs["config_hash"]
    rerun = subprocess.run([sys.executable, "-m", "sweep.reproduce", best, "--tracking-uri", cluster["mlflow"],
                            "--sweeps-dir", str(tmp_path / "no-sweeps")], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "reproduced: all" in rerun.stdout


@needs_ray
@pytest.mark.slow
def test_several_nodes_need_an_mlflow_server(cluster, in_tmp):
    out = subprocess.run([sys.executable, "-m", "sweep", "+experiment=smoke", "sweep.backend=ray", "train.device=cpu",
                          f"sweep.ray.address={cluster['ray']}"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("error: tracking.tracking_uri: sqlite:///.mlflow/mlflow.db is a file on this machine"), out.stderr
    assert "mlflow server --serve-artifacts" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not Path("sweeps").exists()


@needs_ray
@pytest.mark.slow
def test_sigkilled_actor_fails_its_trial_which_is_retried_on_another_actor(cluster, in_tmp, monkeypatch):
    monkeypatch.setenv("LORASWEEP_FAULTS", "1:kill")
    study = f"ray_kill_{uuid.uuid4().hex[:8]}"
    Coordinator(_ray_sweep(cluster, study, "sweep.n_trials=3", "sweep.retry_failed=1")).run()
    trials = {t.number: t for t in _study(study).get_trials()}
    assert trials[1].state == C.FAIL and "its process exited" in trials[1].user_attrs["failure_reason"]
    assert trials[1].user_attrs["failure_reason"].startswith("worker ")  # which worker, node and host
    retry = [t for t in trials.values() if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].state == C.COMPLETE and retry[0].params == trials[1].params
    runs = {int(r.data.tags["lorasweep.trial_number"]): r for r in _trial_runs(cluster, study)}
    assert runs[1].info.status == "FAILED" and "its process exited" in runs[1].data.tags["lorasweep.failure_reason"]
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    assert (Path("sweeps") / study / "trials" / f"0001-{trials[1].user_attrs['config_hash']}" / "INCOMPLETE").is_file()


@needs_ray
@pytest.mark.slow
def test_actor_that_stops_answering_is_killed_and_its_trial_retried(cluster, in_tmp):
    import psutil

    study = f"ray_hang_{uuid.uuid4().hex[:8]}"
    run = _ray_sweep(cluster, study, "sweep.n_trials=3", "sweep.retry_failed=1", "sweep.ray.unresponsive_s=8",
                     "train.max_steps=120", "sweep.workers=1")
    stopped: list[psutil.Process] = []

    def freeze() -> None:  # SIGSTOP the actor in the middle of its first trial
        deadline = time.time() + 240
        while time.time() < deadline and not stopped:
            try:
                running = [t for t in _study(study).get_trials() if t.state == C.RUNNING]
            except Exception:
                running = []
            if running:
                time.sleep(1.0)
                actors = [p for p in psutil.process_iter(["name", "cmdline"])
                          if "TrialActor" in " ".join(p.info["cmdline"] or []) + (p.info["name"] or "")]
                for p in actors:
                    p.send_signal(signal.SIGSTOP)
                    stopped.append(p)
            time.sleep(0.3)

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    try:
        Coordinator(run).run()
    finally:
        for p in stopped:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
            except psutil.Error:
                pass
    assert stopped, "no actor was frozen"
    trials = _study(study).get_trials()
    failed = [t for t in trials if t.state == C.FAIL]
    assert len(failed) == 1 and "stopped answering" in failed[0].user_attrs["failure_reason"], [t.user_attrs for t in trials]
    assert [t.state for t in trials].count(C.COMPLETE) == 3
    assert any(t.user_attrs.get("retry_of") == failed[0].number and t.state == C.COMPLETE for t in trials)
    assert not [r for r in _trial_runs(cluster, study) if r.info.status == "RUNNING"]


@needs_ray
@pytest.mark.slow
def test_node_lost_mid_trial_fails_and_retries_its_trials_nothing_lost(cluster, in_tmp):
    study = f"ray_node_{uuid.uuid4().hex[:8]}"
    node2 = _script("node-id", cluster["dir"])
    cmd = [sys.executable, "-m", "sweep", "+experiment=smoke", "sweep.backend=ray", "train.device=cpu", f"sweep.ray.address={cluster['ray']}",
           f"sweep.study_name={study}", f"tracking.tracking_uri={cluster['mlflow']}", "sweep.progress=plain",
           "sweep.n_trials=6", "sweep.retry_failed=1", "train.max_steps=200", "train.eval_every=0"]  # trials long enough to be caught mid-way
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LORASWEEP_FAULTS": "", "PYTHONUNBUFFERED": "1"})
    try:
        deadline, victim = time.time() + 300, None
        while time.time() < deadline and victim is None and proc.poll() is None:
            try:
                runs = _trial_runs(cluster, study)
            except Exception:  # the experiment does not exist yet
                runs = []
            on_node2 = [r for r in runs if r.info.status == "RUNNING" and r.data.tags.get("lorasweep.node_id") == node2]
            if on_node2 and any(r.info.status == "FINISHED" for r in runs):
                victim = int(on_node2[0].data.tags["lorasweep.trial_number"])
                _script("stop-node", cluster["dir"])  # the node vanishes: raylet, agents and actors SIGKILLed
                complete_before = {t.number for t in _study(study).get_trials() if t.state == C.COMPLETE}
            time.sleep(0.5)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        _script("start-node", cluster["dir"])  # later tests get their two nodes back
    assert victim is not None, "no trial was seen running on the second node"
    assert proc.returncode == 0, out
    trials = {t.number: t for t in _study(study).get_trials()}
    states = [t.state for t in trials.values()]
    assert states.count(C.COMPLETE) == 6 and C.RUNNING not in states, out
    assert complete_before <= {n for n, t in trials.items() if t.state == C.COMPLETE}  # 0 completed trials lost
    lost = trials[victim]
    assert lost.state == C.FAIL and "its node was lost" in lost.user_attrs["failure_reason"], lost.user_attrs
    assert node2[:8] in lost.user_attrs["failure_reason"]
    retry = [t for t in trials.values() if t.user_attrs.get("retry_of") == victim]
    assert len(retry) == 1 and retry[0].state == C.COMPLETE
    runs = _trial_runs(cluster, study)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert [r.info.status for r in runs if r.data.tags["lorasweep.trial_number"] == str(victim)] == ["FAILED"]
    retry_run = next(r for r in runs if r.data.tags["lorasweep.trial_number"] == str(retry[0].number))
    assert retry_run.data.tags["lorasweep.node_id"] != node2  # retried on another actor


def _actor_pids() -> set[int]:
    import psutil

    out = set()
    for p in psutil.process_iter(["name", "cmdline"]):
        if "TrialActor" in " ".join(p.info["cmdline"] or []) + (p.info["name"] or ""):
            out.add(p.pid)
    return out


@needs_ray
@pytest.mark.slow
def test_killed_coordinator_takes_its_actors_along_and_a_rerun_resumes(cluster, in_tmp):
    import psutil

    study = f"ray_coord_{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "sweep", "+experiment=smoke", "sweep.backend=ray", "train.device=cpu", f"sweep.ray.address={cluster['ray']}",
           f"sweep.study_name={study}", f"tracking.tracking_uri={cluster['mlflow']}", "sweep.progress=plain",
           "train.max_steps=40"]
    env = {**os.environ, "LORASWEEP_FAULTS": "", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline, actors = time.time() + 300, set()
    while time.time() < deadline and proc.poll() is None:
        try:
            states = [t.state for t in _study(study).get_trials()]
        except Exception:
            states = []
        if C.COMPLETE in states and C.RUNNING in states:
            actors = _actor_pids()
            proc.kill()  # the coordinator dies mid-trial (SIGKILL)
            break
        time.sleep(0.3)
    first, _ = proc.communicate(timeout=60)
    assert actors, first
    gone = psutil.wait_procs([psutil.Process(p) for p in actors if psutil.pid_exists(p)], timeout=30)[1]
    assert not gone, f"actors outlived their coordinator by 30 s: {[p.pid for p in gone]}"
    complete_before = {t.number for t in _study(study).get_trials() if t.state == C.COMPLETE}
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)  # the same command resumes
    assert rerun.returncode == 0, first + rerun.stdout + rerun.stderr
    trials = _study(study).get_trials()
    states = [t.state for t in trials]
    assert states.count(C.COMPLETE) == 6 and C.RUNNING not in states
    assert complete_before <= {t.number for t in trials if t.state == C.COMPLETE}
    assert any("sweep process died" in t.user_attrs.get("failure_reason", "") for t in trials if t.state == C.FAIL)
    assert not [r for r in _trial_runs(cluster, study) if r.info.status == "RUNNING"]

