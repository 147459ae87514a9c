"""The autoregressive baseline on the same backbone, and its use as a judge of generated stories."""

import dataclasses
import math

import pytest
import torch


@pytest.fixture()
def causal_model(nb, cfg, tokenizer):
    torch.manual_seed(0)
    ar_cfg = dataclasses.replace(cfg, objective="autoregressive")
    return nb.DiffusionLM(**nb.model_kwargs(ar_cfg, len(tokenizer))).eval(), ar_cfg


def test_causal_model_never_looks_ahead(causal_model, tokenizer, cfg):
    model, _ = causal_model
    x = torch.randint(10, len(tokenizer), (1, cfg.seq_len))
    y = x.clone()
    y[0, 40:] = (x[0, 40:] + 1) % len(tokenizer)
    t = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        assert torch.allclose(model(x, t)[0, :40], model(y, t)[0, :40], atol=1e-5)
        assert not torch.allclose(model(x, t)[0, 40:], model(y, t)[0, 40:])


def test_next_token_loss_and_exact_validation_nll(nb, causal_model, tokenizer, cfg):
    model, ar_cfg = causal_model
    x = torch.randint(10, len(tokenizer), (4, cfg.seq_len))
    with torch.no_grad():
        losses = nb.next_token_losses(model, x)
        logits = model(x[:, :-1], torch.zeros(4, dtype=torch.long))
        manual = -logits.log_softmax(-1).gather(-1, x[:, 1:, None]).squeeze(-1)
    assert losses.shape == (4 * (cfg.seq_len - 1),)
    assert torch.allclose(losses, manual.flatten(), atol=1e-5)
    metrics = nb.evaluate(model, x, ar_cfg, tokenizer, "cpu")
    assert metrics["loss"] == metrics["nelbo"] == pytest.approx(losses.mean().item(), rel=1e-5)
    assert nb.training_loss(model, x, ar_cfg, tokenizer.mask_token_id, None).item() == pytest.approx(
        losses.mean().item(), rel=1e-5
    )


def test_generative_perplexity_scores_the_story_up_to_eos(nb, causal_model, tokenizer):
    model, _ = causal_model
    prefix = tokenizer.encode(nb.CHAT_PREFIX)
    story = tokenizer.encode("The cat sat.") + [tokenizer.eos_token_id]
    row = prefix + story + [tokenizer.pad_token_id] * 5  # what comes after [EOS] is not scored
    with torch.no_grad():
        losses = nb.next_token_losses(model, torch.tensor([prefix + story]))[len(prefix) - 1 :]
    assert len(losses) == len(story)
    expected = math.exp(losses.mean().item())
    assert nb.generative_perplexity(model, tokenizer, torch.tensor([row]), "cpu") == pytest.approx(expected, rel=1e-5)


def test_the_baseline_trains_and_is_opt_in_for_the_full_run(nb, causal_model, tokenizer, tiny_data, tmp_path):
    model, ar_cfg = causal_model
    short = dataclasses.replace(ar_cfg, micro_steps=30, warmup_steps=3, evals_per_run=1)
    stream, val = tiny_data(short.seq_len)
    history, _ = nb.train(model, short, stream, val, tokenizer, "cpu", tmp_path / "run")
    assert history["val"][-1][1] < history["val"][0][1] - 0.5
    assert nb.get_config("quick").train_baseline and not nb.get_config("budget_100").train_baseline
