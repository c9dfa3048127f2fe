"""GPUs as the driver lists them, what a trial may use of them, and the precision `auto` resolves to: on CPU, with
the driver's own output formats and fake GPU lists (the real ones are read on a GPU machine: make gpu-check)."""

from __future__ import annotations

import pytest

from sweep import gpus
from sweep.config.compose import compose
from sweep.config.errors import ConfigError
from sweep.config.hashing import config_hash

LIST = """GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-aaaa-1111)
  MIG 3g.40gb     Device  0: (UUID: MIG-bbbb-2222)
  MIG 3g.40gb     Device  1: (UUID: MIG-cccc-3333)
GPU 1: Tesla T4 (UUID: GPU-dddd-4444)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-eeee-5555)
"""
QUERY = """0, GPU-aaaa-1111, NVIDIA A100-SXM4-80GB, 8.0, 81920
1, GPU-dddd-4444, Tesla T4, 7.5, 15360
2, GPU-eeee-5555, NVIDIA H100 80GB HBM3, 9.0, 81559
"""
H100 = gpus.Gpu("0", "NVIDIA H100 80GB HBM3", "GPU-eeee-5555", capability=(9, 0), memory_mib=81559)
T4 = gpus.Gpu("1", "Tesla T4", "GPU-dddd-4444", capability=(7, 5), memory_mib=15360)
ON_GPU = "train.device=auto"  # the test settings train on the CPU (tests/conftest.py): these configs are a GPU host's


@pytest.fixture
def machine(monkeypatch):
    """Set this machine's GPU list: machine(H100, T4)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def set_(*found):
        monkeypatch.setattr(gpus, "machine_gpus", lambda: tuple(found))

    return set_


def test_the_driver_list_puts_mig_instances_in_place_of_their_gpu():
    found = gpus.parse_list(LIST, gpus.parse_query(QUERY))
    assert [g.uuid for g in found] == ["MIG-bbbb-2222", "MIG-cccc-3333", "GPU-dddd-4444", "GPU-eeee-5555"]
    assert found[0].mig and found[0].capability == (8, 0) and found[0].name == "NVIDIA A100-SXM4-80GB MIG 3g.40gb"
    assert found[2] == gpus.Gpu("1", "Tesla T4", "GPU-dddd-4444", capability=(7, 5), memory_mib=15360)
    assert gpus.parse_list("No devices were found\n") == [] and gpus.parse_query("") == []


def test_workers_get_uuids_so_cuda_and_driver_order_cannot_disagree(machine, monkeypatch):
    machine(H100, T4)
    assert gpus.visible_gpus() == ["GPU-eeee-5555", "GPU-dddd-4444"]
    machine(gpus.Gpu("0", "", ""))  # only the driver's count known (/proc/driver/nvidia/gpus)
    assert gpus.visible_gpus() == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpus.visible_gpus() == ["1"]


def test_one_trial_is_pinned_to_one_gpu():
    env = {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert gpus.pin_one_gpu(env) == "2" and env == {"CUDA_VISIBLE_DEVICES": "2"}
    for given in ("5", "-1", ""):
        env = {"CUDA_VISIBLE_DEVICES": given}
        assert gpus.pin_one_gpu(env) is None and env == {"CUDA_VISIBLE_DEVICES": given}


def test_pinning_with_nothing_set_keeps_the_first_gpu(machine):
    machine(H100, T4)
    env: dict = {}
    assert gpus.pin_one_gpu(env) == "GPU-eeee-5555" and env == {"CUDA_VISIBLE_DEVICES": "GPU-eeee-5555"}
    machine(H100)
    env = {}
    assert gpus.pin_one_gpu(env) is None and env == {}


def test_usable_follows_cuda_visible_devices_by_index_or_uuid(machine):
    machine(H100, T4)
    assert gpus.usable({}) == [H100, T4]
    assert gpus.usable({"CUDA_VISIBLE_DEVICES": "1"}) == [T4]
    assert gpus.usable({"CUDA_VISIBLE_DEVICES": "GPU-eeee"}) == [H100]  # CUDA takes a unique UUID prefix
    assert gpus.usable({"CUDA_VISIBLE_DEVICES": "-1"}) == [] and gpus.usable({"CUDA_VISIBLE_DEVICES": "0,-1,1"}) == [H100]


def test_auto_precision_is_bf16_where_every_gpu_has_it(machine):
    machine()
    assert gpus.auto_precision("auto") == "fp32"
    machine(H100)
    assert gpus.auto_precision("auto") == "bf16" and gpus.auto_precision("cpu") == "fp32"
    machine(T4)
    assert gpus.auto_precision("cuda") == "fp16"
    machine(H100, T4)
    assert gpus.auto_precision("auto") == "fp16" and gpus.without_bf16() == [T4]
    machine(gpus.Gpu("0", "", ""))  # capability unknown: not assumed to have bf16
    assert gpus.auto_precision("auto") == "fp16"


def test_auto_is_resolved_before_the_hash(machine):
    """One hash, one precision: `auto` never reaches the hash, the trial folder or a worker."""
    machine(H100)
    auto = compose(["model=tiny_bert", "train=gpu", "quant=nf4", ON_GPU]).trial
    assert (auto.train.precision, auto.quant.compute_dtype) == ("bf16", "bfloat16")
    explicit = compose(["model=tiny_bert", "train=gpu", "quant=nf4", "train.precision=bf16",
                        "quant.compute_dtype=bfloat16", ON_GPU]).trial
    assert config_hash(auto) == config_hash(explicit) and auto.to_dict() == explicit.to_dict()
    machine(T4)
    old = compose(["model=tiny_bert", "train=gpu", "quant=nf4", ON_GPU]).trial
    assert (old.train.precision, old.quant.compute_dtype) == ("fp16", "float16")
    machine()  # this CPU machine: what quant=nf4 computed before `auto` existed, whatever the training precision
    cpu = compose(["model=tiny_bert", "quant=nf4"]).trial
    assert cpu.quant.compute_dtype == "float32"
    assert compose(["model=tiny_bert", "quant=nf4", "train.precision=bf16"]).trial.quant.compute_dtype == "float32"
    assert config_hash(cpu) == config_hash(compose(["model=tiny_bert", "quant=nf4", "quant.compute_dtype=float32"]).trial)


def test_a_precision_the_gpus_cannot_run_is_refused_before_any_worker(machine):
    from sweep.orchestration.preflight import check_precision

    machine(H100, T4)
    with pytest.raises(ConfigError) as e:
        check_precision(compose(["model=tiny_bert", "train.precision=bf16", ON_GPU]))
    assert e.value.problems == ["train.precision: bf16 needs compute capability 8.0, but GPU 1 (Tesla T4) has 7.5: use "
                                "train.precision=auto (fp16 there) or fp16, and quant.compute_dtype=auto or float16"]
    check_precision(compose(["model=tiny_bert", "train.precision=bf16", "train.device=cpu"]))  # the CPU runs bf16
    check_precision(compose(["model=tiny_bert", "train=gpu", ON_GPU]))  # auto: fp16 on this pair
    with pytest.raises(ConfigError, match="sweep.backend=ray trains on the cluster's"):
        check_precision(compose(["model=tiny_bert", "train=gpu", "sweep.backend=ray", ON_GPU]))
    with pytest.raises(ConfigError, match="model.dtype=float16"):
        compose(["model=tiny_bert", "train.precision=fp16", "train.device=cuda", "model.dtype=float16"])


def test_a_trial_that_sees_several_gpus_fails_instead_of_data_parallel(monkeypatch):
    """transformers' Trainer wraps the model in nn.DataParallel when it sees several GPUs: the effective batch is
    multiplied under the same config hash. The training loop refuses instead (the CLIs pin one GPU first)."""
    from transformers import TrainingArguments

    from sweep.results import TrialStatus
    from sweep.trial import run_trial

    monkeypatch.setattr(TrainingArguments, "n_gpu", property(lambda self: 2))
    res = run_trial(compose(["model=tiny_bert", "train=fast", "data.train_size=16", "data.eval_size=8"]).trial)
    assert res.status is TrialStatus.FAILED and "DataParallel" in res.error and "2 GPUs" in res.error


# ---------------------------------------------------------------- several workers on one GPU
def _hold(lock_dir: str, kind: str, seconds: float, started) -> None:
    import os
    import time

    from sweep.measure.gpu_share import GpuShare

    os.environ["LORASWEEP_GPU_LOCK_DIR"] = lock_dir
    share = GpuShare("GPU-eeee-5555", 2)
    with (share.timing() if kind == "timing" else share.working()):
        started.set()
        time.sleep(seconds)


def _contend(tmp_path, monkeypatch, first: str, then: str) -> float:
    """Seconds `then` waited for the lock while another process held `first` for 1 s."""
    import multiprocessing as mp

    from sweep.measure.gpu_share import GpuShare

    monkeypatch.setenv("LORASWEEP_GPU_LOCK_DIR", str(tmp_path))
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    other = ctx.Process(target=_hold, args=(str(tmp_path), first, 1.0, started))
    other.start()
    assert started.wait(60)
    share = GpuShare("GPU-eeee-5555", 2)
    with (share.timing() if then == "timing" else share.working()):
        pass
    other.join(10)
    return share.waited_s[then]


def test_latency_timing_waits_for_a_neighbours_work_on_the_same_gpu(tmp_path, monkeypatch):
    assert _contend(tmp_path, monkeypatch, "working", "timing") > 0.5  # timing waits for the neighbour's training
    assert _contend(tmp_path, monkeypatch, "timing", "working") > 0.5  # training waits for the neighbour's timing
    assert _contend(tmp_path, monkeypatch, "working", "working") < 0.5  # two trainings share the GPU


def test_a_gpu_of_its_own_or_the_cpu_takes_no_lock(tmp_path, monkeypatch):
    from sweep.measure.gpu_share import GpuShare, memory_fraction
    from sweep.orchestration.protocol import Placement

    monkeypatch.setenv("LORASWEEP_GPU_LOCK_DIR", str(tmp_path / "locks"))
    for placement in ({}, {"gpu": "", "gpu_share": ""}, {"gpu": "0", "gpu_share": "1"}):
        share = GpuShare.of(placement)
        with share.timing(), share.working():
            pass
        assert not share.shared and share.waited_s == {}
    assert not (tmp_path / "locks").exists()
    assert GpuShare.of({"gpu": "0", "gpu_uuid": "GPU-x", "gpu_share": "3"}) == GpuShare("GPU-x", 3)
    assert memory_fraction(1) is None and memory_fraction(4) == 0.25
    assert Placement.here("0", share=2).gpu_share == "2" and Placement.here(None, share=2).gpu_share == ""


def test_local_workers_know_how_many_share_their_gpu():
    from sweep.orchestration.local_pool import LocalPool
    from sweep.orchestration.pool import plan_workers

    assert LocalPool(plan_workers("auto", 2, 0, gpus=["A", "B"])).shares == {"A": 2, "B": 2}
    assert LocalPool(plan_workers(3, 1, 0, gpus=["A", "B"])).shares == {"A": 2, "B": 1}
    assert LocalPool(plan_workers(2, 1, 0, gpus=[])).shares == {}


def test_training_is_priced_by_the_share_of_the_gpus_a_trial_held():
    import pandas as pd

    from sweep.config.cost import CostConfig
    from sweep.report.cost import add_costs, devices_held

    frame = pd.DataFrame({"gpu": ["0", "0,1", "", "GPU-x"], "gpu_share": ["2", "1", "", ""],
                          "train_time_s": [3600.0] * 4, "status": ["COMPLETE"] * 4, "reused_from": [None] * 4})
    assert list(devices_held(frame)) == [0.5, 2.0, 1.0, 1.0]
    own = add_costs(frame, CostConfig(price_per_device_hour=2.0, monthly_benefit=1.0))
    assert list(own["training_cost_usd"]) == [1.0, 4.0, 2.0, 2.0]
    fixed = add_costs(frame, CostConfig(price_per_device_hour=2.0, monthly_benefit=1.0, devices_per_trial=3))
    assert list(fixed["training_cost_usd"]) == [6.0] * 4


# ---------------------------------------------------------------- one trial across several GPUs
def test_workers_of_several_gpus_each():
    from sweep.orchestration.pool import plan_workers
    from sweep.orchestration.ray_connect import plan_actors

    assert [g for g, _ in plan_workers("auto", 1, 0, gpus=["0", "1", "2", "3"], gpus_per_worker=2)] == ["0,1", "2,3"]
    assert [g for g, _ in plan_workers("auto", 1, 0, gpus=["0", "1", "2"], gpus_per_worker=2)] == ["0,1"]
    assert [g for g, _ in plan_workers(1, 1, 0, gpus=["0", "1", "2", "3"], gpus_per_worker=2)] == ["0,1"]
    with pytest.raises(ConfigError, match="sweep.gpus_per_worker: 2 GPUs per worker, but 1 visible"):
        plan_workers("auto", 1, 0, gpus=["0"], gpus_per_worker=2)
    plan = plan_actors("auto", 1, 1.0, 0, {"GPU": 4.0, "CPU": 16.0}, gpus_per_worker=2)
    assert plan.resources == {"num_gpus": 2.0, "num_cpus": 0.0} and plan.capacity == 2 and plan.count == 2
    with pytest.raises(ConfigError, match="sweep.gpus_per_worker"):
        compose(["sweep.gpus_per_worker=2", "sweep.workers_per_gpu=2"])


def test_a_model_is_placed_across_a_workers_gpus_with_room_to_train():
    from sweep.models.loader import SPREAD_HEADROOM, device_map_for

    assert device_map_for([81920]) is None and device_map_for([]) is None
    spread = device_map_for([81920, 40960])
    assert spread == {"device_map": "auto", "max_memory": {0: f"{int(81920 * SPREAD_HEADROOM)}MiB",
                                                           1: f"{int(40960 * SPREAD_HEADROOM)}MiB"}}


def test_preflight_refuses_weights_the_workers_gpus_cannot_hold(machine):
    """Llama-3.1-8B in bf16 is about 15 GiB of weights: not on one 15 GiB T4, on two of them."""
    from sweep.orchestration.preflight import check_gpus

    t4b = gpus.Gpu("2", "Tesla T4", "GPU-ffff-6666", capability=(7, 5), memory_mib=15360)
    machine(T4, t4b)
    big = ["model=llama3_1_8b", "data=instruct_llm", "model.dtype=bfloat16", ON_GPU]
    with pytest.raises(ConfigError) as e:
        check_gpus(compose(big))
    (line,) = e.value.problems
    assert line.startswith("sweep.gpus_per_worker: model llama3.1-8b's weights take 15.0 GiB as stored, more than the "
                           "14.5 GiB one GPU of this machine leaves") and "quant=nf4" in line
    check_gpus(compose([*big, "sweep.gpus_per_worker=2"]))
    check_gpus(compose([*big, "quant=nf4"]))
    with pytest.raises(ConfigError, match="shared by 2 workers"):  # each worker may allocate half of a T4
        check_gpus(compose([*big, "quant=nf4", "sweep.workers_per_gpu=2"]))
    with pytest.raises(ConfigError, match="this machine shows 2"):
        check_gpus(compose([*big, "sweep.gpus_per_worker=3"]))
    check_gpus(compose([*big, "train.device=cpu"]))  # the CPU: no GPU to fit


def test_nvml_lists_gpus_and_mig_instances_and_falls_back_on_errors(monkeypatch):
    """nvidia-ml-py (installed on the GPU test machine) is read first; an NVML that errors mid-list gives way to
    nvidia-smi instead of breaking preflight."""
    import sys
    import types

    def fake(fail_uuid: bool = False, mig: bool = False):
        m = types.SimpleNamespace()
        m.nvmlInit = m.nvmlShutdown = lambda: None
        m.nvmlDeviceGetCount = lambda: 2
        m.nvmlDeviceGetHandleByIndex = lambda i: i
        m.nvmlDeviceGetName = lambda h: b"NVIDIA H200" if h == 0 else "Tesla T4"
        m.nvmlDeviceGetUUID = (lambda h: (_ for _ in ()).throw(RuntimeError("NVML_ERROR_UNKNOWN"))) if fail_uuid \
            else (lambda h: f"GPU-{h}" if isinstance(h, int) else f"MIG-{h[1]}")
        m.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0) if h == 0 else (7, 5)
        m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=(143771 if h == 0 else 15360) * 2**20)
        m.nvmlDeviceGetMigMode = lambda h: (1 if mig and h == 0 else 0, 0)
        m.nvmlDeviceGetMaxMigDeviceCount = lambda h: 2
        m.nvmlDeviceGetMigDeviceHandleByIndex = lambda h, j: ("mig", j)
        return m

    monkeypatch.setitem(sys.modules, "pynvml", fake())
    assert gpus._nvml() == [gpus.Gpu("0", "NVIDIA H200", "GPU-0", capability=(9, 0), memory_mib=143771),
                            gpus.Gpu("1", "Tesla T4", "GPU-1", capability=(7, 5), memory_mib=15360)]
    monkeypatch.setitem(sys.modules, "pynvml", fake(mig=True))
    assert [g.uuid for g in gpus._nvml()] == ["MIG-0", "MIG-1", "GPU-1"]
    monkeypatch.setitem(sys.modules, "pynvml", fake(fail_uuid=True))
    assert gpus._nvml() is None  # machine_gpus asks nvidia-smi then
