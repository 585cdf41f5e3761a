"""The training patches (``medtune.train.patches``): each one undoes what it did, the whole set is undone
when training fails, the GPU path is plain, and a library outside a verified range gets the plain path."""

import math
import warnings

import pytest
import torch

from medtune.train import allocator, fused_lora, patches, varlen
from medtune.train.checkpointing import CheckpointPlan
from medtune.train.patches import CPU_ONLY, PatchVersionWarning, all_patches, doctor_rows, training_patches


def process_state(model=None) -> dict:
    """What the patches may change outside the adapters: the process, module globals, the model's forwards."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    state = {
        "allocator": allocator.settings(),
        "attention registered": varlen.NAME in AttentionInterface._global_mapping,
        "mask registered": varlen.NAME in type(ALL_MASK_ATTENTION_FUNCTIONS)._global_mapping,
        "varlen cache": varlen._last_bounds is not None,
        "widening buffers": len(fused_lora._WIDE),
    }
    if model is not None:
        state["patched forwards"] = sorted(n for n, m in model.named_modules() if "forward" in vars(m))
        state["attention"] = model.config._attn_implementation
        state["16-bit tensors"] = sum(p.dtype != torch.float32 for p in model.parameters())
        state["checkpointing flags"] = [
            getattr(m, "gradient_checkpointing", None)
            for m in model.modules()
            if hasattr(m, "gradient_checkpointing")
        ]
    return state


@pytest.fixture(autouse=True)
def clean_module_caches():
    """Caches other tests may have left filled (they hold no settings, only reusable buffers)."""
    varlen.reset_cache()
    fused_lora.release_widening_buffers()


@pytest.fixture
def fp16_model_dir(tmp_path, tiny_model_dir, qwen_tokenizer):
    """The tiny model saved in fp16: the compact-weights patches have something to keep 16-bit."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "tiny-fp16"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).half().save_pretrained(out)
    qwen_tokenizer.save_pretrained(out)
    return out


class _Boom(Exception):
    pass


@pytest.mark.parametrize(
    "error, where",
    [(_Boom, "step 2"), (KeyboardInterrupt, "step 2"), (RuntimeError, "rank check")],
    ids=["exception", "ctrl-c", "failed-rank-check"],
)
def test_an_error_inside_training_leaves_the_process_as_it_found_it(
    tiny_config, fp16_model_dir, monkeypatch, error, where
):
    """run_sft fails at step 2 (a callback raises) or at the rank check after training: every patch was on
    then, and every one is undone after."""
    from transformers import TrainerCallback

    import medtune.train.sft as sft
    from medtune.data.prepare import prepare

    before = process_state()
    seen = {}

    class RaiseAtStep2(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 2:
                seen["during"] = process_state()
                seen["model"] = model
                if where == "step 2":
                    raise error("stop")

    def ranks_differ(trainer):
        raise error("data-parallel ranks ended with different adapters")

    monkeypatch.setattr(sft, "_rank_checksums", ranks_differ)
    real_callbacks = sft.make_callbacks
    monkeypatch.setattr(sft, "make_callbacks", lambda cfg: [*real_callbacks(cfg), RaiseAtStep2()])
    cfg = tiny_config(
        f"model.name_or_path={fp16_model_dir}",
        "train.max_steps=2",
        "train.eval_steps=0",
        "train.load_best_at_end=false",
        "train.gradient_checkpointing=auto",
        "train.activation_budget_gb=0.000001",  # the per-batch plan checkpoints some layers
    )
    prepare(cfg)
    with pytest.raises(error):
        sft.run_sft(cfg)
    during, model = seen["during"], seen["model"]
    assert during["allocator"] and during["attention registered"] and during["widening buffers"]
    after = process_state()
    assert after == before
    assert process_state(model)["patched forwards"] == []
    assert model.config._attn_implementation == "sdpa"
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # widened back from fp16


# The patches in application order, with what each visibly changes while on.
CHANGES = {
    "allocator": "allocator",
    "lean_lm_head": "patched forwards",
    "per_sample_attention": "attention",
    "fused_lora": "patched forwards",
    "compact_frozen_weights": "16-bit tensors",
    "checkpointing_plan": None,  # records the flags; training_step sets them
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_each_patch_undoes_what_it_applied(tiny_config, fp16_model_dir, name):
    from medtune.model.loader import load_model

    cfg = tiny_config(f"model.name_or_path={fp16_model_dir}", "train.gradient_checkpointing=auto")
    ctx = patches.PatchContext.from_config(cfg)
    rows = patches.plan(ctx)
    assert all(on for p, on, _ in rows if p.name in CHANGES), [(p.name, why) for p, on, why in rows]
    kwargs = {}
    for p, on, _ in rows:
        kwargs |= p.load_kwargs(ctx) if on else {}
    model, _, _ = load_model(cfg.model, **kwargs)
    ctx.model_dtype = model.dtype
    ctx.checkpointing = CheckpointPlan("off")
    done = []
    try:
        for p, on, _ in rows:
            if not on:
                continue
            if p.name == name:
                before = process_state(model)
                model = p.apply(model, ctx)
                if name == "checkpointing_plan":
                    for layer in p._flags:
                        layer[0].gradient_checkpointing = True
                during = process_state(model)
                key = CHANGES[name] or "checkpointing flags"
                assert during[key] != before[key], f"{name} changed nothing visible in {key}"
                if name == "compact_frozen_weights":
                    # Undone to the fp32 model training hands back, not to the half-built fp16 one.
                    before["16-bit tensors"] = 0
                p.undo()
                assert process_state(model) == before
                p.undo()  # idempotent
                assert process_state(model) == before
                break
            model = p.apply(model, ctx)
            done.append(p)
    finally:
        for p in reversed(done):
            p.undo()


def test_on_cuda_every_patch_verified_on_cpu_only_is_off(tiny_config):
    rows = {name: (state, reason) for name, state, reason, *_ in doctor_rows(tiny_config(), device="cuda")}
    for patch in all_patches():
        if patch.cpu_only:
            assert rows[patch.name][0] == "off", patch.name
    for name in ("allocator", "lean_lm_head", "per_sample_attention", "fused_lora"):
        assert rows[name] == ("off", CPU_ONLY), name
    assert rows["lora"][0] == "on"


def test_qlora_on_cpu_is_refused_not_quietly_trained_as_lora(tiny_config):
    from medtune.config import ConfigError

    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        doctor_rows(tiny_config("train.method=qlora"), device="cpu")


def _loss(model, batch) -> torch.Tensor:
    return model(**batch).loss


def test_a_library_outside_the_verified_range_warns_and_gets_the_plain_path(tiny_config, monkeypatch):
    """transformers and peft 'upgraded': every patch relying on them warns and stays off; the model is plain
    PEFT, to the bit."""
    from medtune.model.adapters import attach_lora
    from medtune.model.loader import load_model

    real = patches.library_versions()
    monkeypatch.setattr(patches, "library_versions", lambda: {**real, "transformers": "9.0.0", "peft": "9.1"})
    cfg = tiny_config()
    with pytest.warns(PatchVersionWarning) as caught, training_patches(cfg) as patched:
        model, _, _ = load_model(cfg.model, **patched.load_kwargs())
        torch.manual_seed(0)
        model = patched.apply(model)
        names = [p.name for p in patched.applied]
        ids = torch.tensor([[151644, 872, 198, 100, 200, 151645, 198, 151644, 77091, 198, 300, 400]])
        batch = {"input_ids": ids, "labels": ids.clone()}
        loss = _loss(model.train(), batch)
    warned = " ".join(str(w.message) for w in caught)
    for name in ("lean_lm_head", "per_sample_attention", "fused_lora"):
        assert f"patch {name} off" in warned, name
    assert names == ["allocator", "lora"]
    plain, _, _ = load_model(cfg.model)
    torch.manual_seed(0)
    plain = attach_lora(plain, cfg.lora)
    assert torch.equal(loss, _loss(plain.train(), batch))


def test_run_sft_trains_through_the_plain_path_when_versions_are_outside(tiny_config, monkeypatch):
    """With the lean LM head off, the trainer computes TRL's own loss (labels over full logits)."""
    from medtune.data.prepare import prepare
    from medtune.train.sft import run_sft

    real = patches.library_versions()
    monkeypatch.setattr(patches, "library_versions", lambda: {**real, "transformers": "9.0.0"})
    cfg = tiny_config("train.max_steps=2", "train.eval_steps=2", "train.load_best_at_end=false")
    prepare(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PatchVersionWarning)
        result = run_sft(cfg)
    assert math.isfinite(result.metrics["train_loss"]) and math.isfinite(result.metrics["eval_loss"])
    assert process_state()["allocator"] == {}


@pytest.mark.gpu
def test_run_sft_on_cuda_trains_through_plain_peft(tiny_config):
    """On a GPU only the library patches apply (LoRA); TRL computes the loss; nothing is left behind."""
    from medtune.data.prepare import prepare
    from medtune.train.sft import run_sft

    assert torch.cuda.is_available()
    cfg = tiny_config("train.max_steps=2", "train.eval_steps=2", "train.load_best_at_end=false")
    on = [name for name, state, *_ in doctor_rows(cfg) if state == "on"]
    assert on == ["lora"]
    before = process_state()
    prepare(cfg)
    result = run_sft(cfg)
    assert math.isfinite(result.metrics["train_loss"]) and math.isfinite(result.metrics["eval_loss"])
    assert next(result.model.parameters()).device.type == "cuda"
    assert process_state() == before
