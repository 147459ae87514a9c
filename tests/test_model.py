import math
from dataclasses import replace

import pytest
import torch


def test_output_shape_and_tied_head(nb, model, tokenizer, cfg):
    idx = torch.randint(len(tokenizer), (3, cfg.model.seq_len))
    logits = model(idx)
    assert logits.shape == (3, cfg.model.seq_len, len(tokenizer))
    assert model.head.weight is model.tok_emb.weight


def test_budget_100_has_about_45m_parameters(nb):
    with torch.device("meta"):
        model = nb.DiffusionLM(nb.get_config("budget_100").model)
    assert 44e6 < nb.count_parameters(model) < 46e6


def test_initial_loss_is_close_to_uniform(nb, model, tokenizer, cfg):
    """N(0, 0.02) init: the untrained model predicts nearly uniformly, loss ~ ln(vocab)."""
    T = cfg.model.diffusion_steps
    x = torch.randint(10, len(tokenizer), (8, cfg.model.seq_len))
    t = torch.full((8,), T)
    noisy, hidden = nb.corrupt(x, t, T, tokenizer.mask_token_id)
    model.eval()
    loss = model(noisy, x)[hidden].mean().item()
    assert abs(loss - math.log(len(tokenizer))) < 0.1


def open_the_gates(model):
    """Every block starts as the identity, its gates at zero; open them so that blocks do something."""
    with torch.no_grad():
        for block in model.blocks:
            block.gate1.fill_(1.0)
            block.gate2.fill_(1.0)


def test_attention_is_bidirectional(nb, model, tokenizer, cfg):
    """Changing the last token changes the prediction at the first position."""
    model.eval()
    open_the_gates(model)
    x = torch.randint(10, len(tokenizer), (1, cfg.model.seq_len))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % len(tokenizer)
    assert not torch.allclose(model(x)[0, 0], model(y)[0, 0])


def test_the_causal_baseline_never_looks_ahead(nb, shape, tokenizer):
    torch.manual_seed(0)
    model = nb.DiffusionLM(replace(shape, causal=True)).eval()
    open_the_gates(model)
    x = torch.randint(10, len(tokenizer), (1, shape.seq_len))
    y = x.clone()
    y[0, 40:] = (x[0, 40:] + 1) % len(tokenizer)
    with torch.no_grad():
        assert torch.allclose(model(x)[0, :40], model(y)[0, :40], atol=1e-5)
        assert not torch.allclose(model(x)[0, 40:], model(y)[0, 40:])


def test_every_block_starts_as_the_identity_and_its_gates_learn(nb, model, tokenizer, cfg):
    """Untrained, the gates are zero and the network is the embedding, normalised; one update opens them."""
    model.eval()
    x = torch.randint(10, len(tokenizer), (2, cfg.model.seq_len))
    with torch.no_grad():
        assert torch.equal(model.hidden_states(x), model.ln_f(model.tok_emb(x)))
    model.train()
    nb.diffusion_loss(model, x, tokenizer.mask_token_id, cfg.model.diffusion_steps).backward()
    assert all(block.gate1.grad.abs().sum() > 0 and block.gate2.grad.abs().sum() > 0 for block in model.blocks)


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


def test_the_model_round_trips_through_the_hub_layout(nb, model, shape, tmp_path):
    assert "rope_cos" not in model.state_dict()  # recomputed on load, never saved
    model.eval().save_pretrained(tmp_path)
    reloaded = nb.DiffusionLM.from_pretrained(tmp_path, strict=True)
    assert reloaded.config == shape and isinstance(reloaded.config, nb.ModelConfig)
    x = torch.randint(shape.vocab_size, (2, shape.seq_len))
    assert torch.equal(model(x), reloaded(x))


def test_a_few_updates_on_one_batch_lower_its_loss(nb, model, tokenizer, shape):
    T = shape.diffusion_steps
    x = torch.randint(10, len(tokenizer), (8, shape.seq_len))
    t = torch.full((8,), T // 2)
    noisy, hidden = nb.corrupt(x, t, T, tokenizer.mask_token_id, torch.Generator().manual_seed(0))
    first = model(noisy, x)[hidden].mean()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(5):
        optimizer.zero_grad()
        model(noisy, x)[hidden].mean().backward()
        optimizer.step()
    assert model(noisy, x)[hidden].mean().item() < first.item() - 0.2


def test_a_shape_that_does_not_split_into_heads_is_a_clear_error(nb, shape):
    with pytest.raises(ValueError, match="d_model=65 must split into n_heads=2 heads of an even width"):
        replace(shape, d_model=65)
    with pytest.raises(ValueError, match="d_model=66 must split into n_heads=2"):
        replace(shape, d_model=66)  # heads of 33: rotary embeddings need an even width
