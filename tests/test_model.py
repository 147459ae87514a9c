import math

import pytest
import torch


def test_output_shape_and_tied_head(nb, model, tokenizer, cfg):
    idx = torch.randint(len(tokenizer), (3, cfg.seq_len))
    logits = model(idx, torch.tensor([1, 5, cfg.diffusion_steps]))
    assert logits.shape == (3, cfg.seq_len, len(tokenizer))
    assert model.head.weight is model.tok_emb.weight


def test_budget_100_has_about_45m_parameters(nb):
    full = nb.get_config("budget_100")
    with torch.device("meta"):
        model = nb.DiffusionLM(**nb.model_kwargs(full, full.vocab_size))
    assert 44e6 < nb.count_parameters(model) < 46e6


def test_initial_loss_is_close_to_uniform(nb, model, tokenizer, cfg):
    """N(0, 0.02) init: the untrained model predicts nearly uniformly, loss ~ ln(vocab), not ~80."""
    protected, mask_id = nb.special_ids(tokenizer)
    x = torch.randint(10, len(tokenizer), (8, cfg.seq_len))
    t = torch.full((8,), cfg.diffusion_steps)
    noisy, hidden = nb.corrupt(x, t, cfg.diffusion_steps, mask_id, protected)
    loss = nb.masked_token_losses(model.eval(), noisy, t, x, hidden).mean().item()
    assert abs(loss - math.log(len(tokenizer))) < 0.1


def test_attention_is_bidirectional(nb, model, tokenizer, cfg):
    """Changing the last token changes the prediction at the first position."""
    model.eval()
    with torch.no_grad():  # adaLN-Zero starts every block as the identity: open the gates first
        for block in model.blocks:
            block.modulation.weight.normal_(std=0.1)
    x = torch.randint(10, len(tokenizer), (1, cfg.seq_len))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % len(tokenizer)
    t = torch.tensor([3])
    assert not torch.allclose(model(x, t)[0, 0], model(y, t)[0, 0])


def test_rotary_attention_scores_depend_only_on_relative_position(nb):
    cos, sin = nb.rotary_tables(32, 16)
    q, k = torch.randn(16), torch.randn(16)

    def score(i, j):
        rq = nb.rotate(q.expand(1, 1, 32, 16), cos, sin)[0, 0, i]
        rk = nb.rotate(k.expand(1, 1, 32, 16), cos, sin)[0, 0, j]
        return rq @ rk

    assert torch.allclose(score(3, 7), score(20, 24), atol=1e-5)
    assert not torch.allclose(score(3, 7), score(3, 9), atol=1e-3)
    x = torch.randn(2, 3, 32, 16)
    assert torch.allclose(nb.rotate(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_rope_model_has_no_position_table_and_round_trips(nb, cfg, tokenizer, tmp_path):
    kwargs = nb.model_kwargs(cfg, len(tokenizer))
    assert kwargs["position"] == "rope"  # the default
    model = nb.DiffusionLM(**kwargs).eval()
    assert model.pos_emb is None and "rope_cos" not in model.state_dict()
    model.save_pretrained(tmp_path)
    reloaded = nb.DiffusionLM.from_pretrained(tmp_path, strict=True)
    x = torch.randint(len(tokenizer), (2, cfg.seq_len))
    t = torch.tensor([2, 9])
    assert torch.equal(model(x, t), reloaded(x, t))
    learned = nb.DiffusionLM(**{**kwargs, "position": "learned"})
    assert nb.count_parameters(model) == nb.count_parameters(learned) - cfg.seq_len * cfg.d_model


def test_the_reference_embedding_init_starts_far_above_uniform(nb, tokenizer, cfg):
    """N(0, 1) on the tied embedding (the reference's init) gives huge first logits; N(0, 0.02) does not."""
    protected, mask_id = nb.special_ids(tokenizer)
    x = torch.randint(10, len(tokenizer), (8, cfg.seq_len))
    t = torch.full((8,), cfg.diffusion_steps // 2)
    noisy, hidden = nb.corrupt(x, t, cfg.diffusion_steps, mask_id, protected, torch.Generator().manual_seed(0))
    losses = {}
    for std in (0.02, 1.0):
        torch.manual_seed(0)
        model = nb.DiffusionLM(**{**nb.model_kwargs(cfg, len(tokenizer)), "embedding_std": std}).eval()
        assert model.tok_emb.weight.std().item() == pytest.approx(std, rel=0.05)
        losses[std] = nb.masked_token_losses(model, noisy, t, x, hidden).mean().item()
    assert abs(losses[0.02] - math.log(len(tokenizer))) < 0.1 and losses[1.0] > 3 * math.log(len(tokenizer))


VARIANTS = [
    {"time_conditioning": "adaln"},
    {"time_conditioning": "none"},
    {"mlp": "swiglu"},
    {"bias": False},
    {"qk_norm": True},
    {"position": "rope", "time_conditioning": "adaln", "mlp": "swiglu", "bias": False, "qk_norm": True},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v[k]}" for k in v))
def test_every_variant_starts_uniform_learns_and_round_trips(nb, cfg, tokenizer, tmp_path, variant):
    torch.manual_seed(0)
    model = nb.DiffusionLM(**{**nb.model_kwargs(cfg, len(tokenizer)), **variant})
    protected, mask_id = nb.special_ids(tokenizer)
    x = torch.randint(10, len(tokenizer), (8, cfg.seq_len))
    t = torch.full((8,), cfg.diffusion_steps // 2)
    noisy, hidden = nb.corrupt(x, t, cfg.diffusion_steps, mask_id, protected, torch.Generator().manual_seed(0))
    first = nb.masked_token_losses(model, noisy, t, x, hidden).mean()
    assert abs(first.item() - math.log(len(tokenizer))) < 0.1
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(5):  # the same batch five times: the loss must go down, whatever the variant
        optimizer.zero_grad()
        nb.masked_token_losses(model, noisy, t, x, hidden).mean().backward()
        optimizer.step()
    assert nb.masked_token_losses(model, noisy, t, x, hidden).mean().item() < first.item() - 0.2
    model.eval().save_pretrained(tmp_path)
    reloaded = nb.DiffusionLM.from_pretrained(tmp_path, strict=True)
    assert reloaded.config == model.config
    assert torch.equal(model(noisy, t), reloaded(noisy, t))


def test_swiglu_keeps_the_parameter_count(nb):
    full = nb.get_config("budget_100")
    counts = {}
    for mlp in ("gelu", "swiglu"):
        with torch.device("meta"):
            counts[mlp] = nb.count_parameters(nb.DiffusionLM(**{**nb.model_kwargs(full, full.vocab_size), "mlp": mlp}))
    assert abs(counts["swiglu"] / counts["gelu"] - 1) < 0.01


def test_no_bias_variant_has_no_biases(nb, cfg, tokenizer):
    model = nb.DiffusionLM(**{**nb.model_kwargs(cfg, len(tokenizer)), "bias": False})
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]


def test_time_input_variants(nb, cfg, tokenizer):
    """ "none" ignores t; adaLN-Zero starts as the identity (ignores t) and depends on t once trained."""
    x = torch.randint(10, len(tokenizer), (2, cfg.seq_len))
    early, late = torch.tensor([1, 1]), torch.tensor([cfg.diffusion_steps] * 2)
    for conditioning in ("none", "adaln"):
        torch.manual_seed(0)
        model = nb.DiffusionLM(**{**nb.model_kwargs(cfg, len(tokenizer)), "time_conditioning": conditioning}).eval()
        assert torch.equal(model(x, early), model(x, late))
    with torch.no_grad():
        for block in model.blocks:
            block.modulation.weight.normal_(std=0.1)
    assert not torch.allclose(model(x, early), model(x, late))


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys(nb, cfg, tokenizer):
    torch.manual_seed(0)
    model = nb.DiffusionLM(**{**nb.model_kwargs(cfg, len(tokenizer)), "qk_norm": True}).eval()
    x, t = torch.randint(10, len(tokenizer), (2, cfg.seq_len)), torch.tensor([3, 7])
    before = model(x, t)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight[: 2 * cfg.d_model] *= 10  # queries and keys, not values
            block.attn.qkv.bias[: 2 * cfg.d_model] *= 10
    assert torch.allclose(before, model(x, t), atol=1e-4)


def test_unknown_variant_names_the_options(nb, cfg, tokenizer):
    with pytest.raises(ValueError, match="mlp must be one of 'gelu', 'swiglu', not 'relu'"):
        nb.DiffusionLM(**{**nb.model_kwargs(cfg, len(tokenizer)), "mlp": "relu"})
