"""benchmarks/ablate.py: each variant changes what its name says, on a fresh copy of the notebook's definitions."""

import copy
import dataclasses

import pytest
import torch

from notebook_defs import load_benchmark

pytestmark = pytest.mark.benchmarks  # developers' tools: CI runs these on requirements-dev.txt, not the floors


@pytest.fixture(scope="module")
def ablate():
    return load_benchmark("ablate")


def build(ablate, names, vocab_size=300):
    nb, cfg = ablate.variant(names, "small")
    torch.manual_seed(0)
    return nb, cfg, nb.DiffusionLM(dataclasses.replace(cfg.model, vocab_size=vocab_size))


def differences(a, b):
    """The Config fields that differ (each variant has its own copy of the notebook's classes: compare values)."""
    a, b = dataclasses.asdict(a), dataclasses.asdict(b)
    return {name for name in a if a[name] != b[name]}


def test_defaults_are_the_notebooks_own(ablate):
    nb, cfg, model = build(ablate, ["defaults"])
    quick = nb.get_config("quick")
    assert differences(cfg, quick) == set(ablate.SMALL) | {"mode", "model"}
    assert type(model) is nb.DiffusionLM and model.config.seq_len == 256


def test_the_reference_is_its_network_init_schedule_and_optimizer(ablate):
    nb, cfg, model = build(ablate, ["reference"])
    assert cfg.optimizer == "adamw"
    assert model.pos_emb.weight.shape == (256, 128) and model.step_emb.weight.shape == (65, 128)
    assert not any("gate" in name for name, _ in model.named_parameters())
    assert model.tok_emb.weight.std().item() == pytest.approx(1.0, rel=0.05)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in model.modules())
    lrs = [nb.lr_at(u, cfg) for u in range(cfg.optimizer_steps)]
    assert 0.45 * cfg.lr < lrs[-1] < 0.55 * cfg.lr  # sized for the micro-steps, stepped per update: half-way
    _, fixed_cfg, fixed = build(ablate, ["fixed"])
    assert fixed.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.05) and not differences(fixed_cfg, cfg)


def test_the_reference_network_trains_and_samples_with_the_notebooks_code(ablate, tmp_path):
    nb, cfg, model = build(ablate, ["reference"])
    from synthetic_stories import make_stories

    stories = make_stories(120)
    tokenizer = nb.train_tokenizer(stories, 300)
    stream = nb.tokenize_stories(tokenizer, stories[:100])
    val = nb.fixed_blocks(nb.tokenize_stories(tokenizer, stories[100:]), 64, 8)
    shape = dataclasses.replace(cfg.model, vocab_size=len(tokenizer), seq_len=64, d_model=32, n_heads=2, n_layers=1)
    short = dataclasses.replace(cfg, model=shape, micro_steps=20, batch_size=4, evals_per_run=1)
    model = nb.DiffusionLM(shape)
    history, _ = nb.train_run(model, short, stream, val, tokenizer, tmp_path / "run")
    assert history["val"][-1][1] < history["val"][0][1]
    tokens, _ = nb.generate(model, tokenizer, ["Once upon a time"], nb.Sampling(steps=4))
    assert not (tokens == tokenizer.mask_token_id).any()


def test_each_variant_changes_only_its_own_part(ablate):
    nb, cfg, model = build(ablate, ["defaults"])
    _, step_cfg, told = build(ablate, ["adaLN-Zero step"])
    assert not differences(step_cfg, cfg) and told.step_emb.weight.shape == (65, 32)
    x = torch.randint(10, 300, (2, 256))
    hidden = x.clone()
    hidden[:, ::2] = load_benchmark("recipes").MASK_ID  # half hidden: told t = 32 of 64
    assert load_benchmark("recipes").step_of(hidden, 64).tolist() == [32, 32]
    with torch.no_grad():
        assert torch.equal(told(x), told.head(told.ln_f(told.tok_emb(x))))  # zero modulation: identity blocks
        for block in told.blocks:
            torch.nn.init.normal_(block.modulation.weight, std=0.1)
        assert not torch.allclose(told(x), told(hidden))
    _, zero_cfg, zeroed = build(ablate, ["zero projections, no gates"])
    assert not any("gate" in name for name, _ in zeroed.named_parameters())
    assert all(block.attn.proj.weight.abs().sum() == 0 == block.mlp.down.weight.abs().sum() for block in zeroed.blocks)
    _, dropout_cfg, dropout = build(ablate, ["dropout 0.1"])
    assert not differences(dropout_cfg, cfg) and type(dropout.blocks[0]).__name__ == "DropoutBlock"
    with torch.no_grad():
        for block in dropout.blocks:  # open the gates, so that the branches reach the output
            block.gate1.fill_(1.0)
            block.gate2.fill_(1.0)
    assert not torch.equal(dropout.train()(x), dropout(x))  # dropout noise while training
    ema = copy.deepcopy(dropout).eval()  # as the EMA copy is: no noise once evaluated
    assert torch.equal(ema(x), ema(x)) and torch.equal(dropout.eval()(x), ema(x))
    assert differences(ablate.variant(["another seed", "lr /3"], "small")[1], cfg) == {"seed", "lr"}
    assert ablate.variant(["lr x3"], "small")[1].lr == pytest.approx(3 * cfg.lr)
    fresh, _ = ablate.variant(["defaults"], "small")
    assert fresh.DiffusionLM is not nb.DiffusionLM and fresh.Block.__name__ == "Block"  # changes never leak


def test_batch_variants_keep_the_tokens_and_the_validation_blocks(ablate):
    _, cfg = ablate.variant(["defaults"], "small")
    blocks_seen = cfg.micro_steps * cfg.batch_size
    for name, blocks in (("half the batch", 8), ("a quarter of the batch", 4)):
        changed = ablate.variant([name], "small")[1]
        assert (changed.batch_size, changed.grad_accum) == (blocks, 1) and changed.micro_steps * blocks == blocks_seen
        assert changed.optimizer_steps == cfg.optimizer_steps * cfg.batch_size * cfg.grad_accum // blocks
        assert changed.eval_batches * blocks == cfg.eval_batches * cfg.batch_size  # the same validation blocks
        assert differences(changed, cfg) <= {"batch_size", "grad_accum", "micro_steps", "eval_batches"}


def test_smaller_shapes_get_more_updates_and_nothing_else(ablate):
    _, cfg = ablate.variant(["defaults"], "small")
    shallow = ablate.variant(["2 layers, 1.8x the updates"], "small")[1]
    shape = dataclasses.asdict(cfg.model)
    assert dataclasses.asdict(shallow.model) == {**shape, "n_layers": 2}
    assert shallow.micro_steps == 1.8 * cfg.micro_steps
    assert differences(shallow, cfg) == {"model", "micro_steps"}
    narrow = ablate.variant(["width 96, 1.4x the updates"], "small")[1]
    assert dataclasses.asdict(narrow.model) == {**shape, "d_model": 96, "n_heads": 3, "d_ff": 384}
    assert narrow.micro_steps == 1.4 * cfg.micro_steps and narrow.lr == pytest.approx(cfg.lr * (128 / 96) ** 1.07, 0.02)
    assert differences(narrow, cfg) == {"model", "micro_steps", "lr"}


def test_untied_embeddings_give_the_output_layer_weights_of_its_own(ablate):
    nb, cfg, tied = build(ablate, ["defaults"])
    _, untied_cfg, untied = build(ablate, ["untied embeddings"])
    assert not differences(untied_cfg, cfg) and untied.head.weight is not untied.tok_emb.weight
    assert nb.count_parameters(untied) == nb.count_parameters(tied) + 300 * cfg.model.d_model
    assert untied.head.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert untied(torch.randint(10, 300, (2, 256))).shape == (2, 256, 300)
