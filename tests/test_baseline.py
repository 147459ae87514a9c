"""The autoregressive baseline on the same backbone, and its use as a judge of generated stories."""

import dataclasses
import math

import pytest
import torch


@pytest.fixture()
def causal_model(nb, shape):
    torch.manual_seed(0)
    return nb.DiffusionLM(dataclasses.replace(shape, causal=True)).eval()


def test_next_token_loss(nb, causal_model, tokenizer, shape):
    x = torch.randint(10, len(tokenizer), (4, shape.seq_len))
    with torch.no_grad():
        loss = nb.next_token_loss(causal_model, x)
        logits = causal_model(x[:, :-1])
        manual = -logits.log_softmax(-1).gather(-1, x[:, 1:, None]).squeeze(-1)
        scored = nb.next_token_nats(causal_model, x, torch.ones_like(x, dtype=torch.bool))
    assert loss.item() == pytest.approx(manual.mean().item(), rel=1e-5)
    assert scored == pytest.approx(manual.sum().item(), rel=1e-5)  # every token but each row's first


def test_generative_perplexity_scores_the_story_up_to_eos(nb, causal_model, tokenizer):
    prefix = tokenizer.encode(nb.CHAT_PREFIX)
    story = tokenizer.encode("The cat sat.") + [tokenizer.eos_token_id]
    row = prefix + story + [tokenizer.pad_token_id] * 5  # what comes after [EOS] is not scored
    x = torch.tensor([prefix + story])
    with torch.no_grad():
        logits = causal_model(x[:, :-1])
        losses = -logits.log_softmax(-1).gather(-1, x[:, 1:, None])[0, len(prefix) - 1 :, 0]
    assert len(losses) == len(story)
    expected = math.exp(losses.mean().item())
    got = nb.generative_perplexity(causal_model, tokenizer, torch.tensor([row]), "cpu")
    assert got == pytest.approx(expected, rel=1e-5)


def test_the_baseline_trains_and_is_opt_in_for_the_full_run(nb, causal_model, cfg, tokenizer, tiny_data, tmp_path):
    short = dataclasses.replace(cfg, model=causal_model.config, micro_steps=30, warmup_steps=3, evals_per_run=1)
    stream, val = tiny_data(cfg.model.seq_len)
    history, _ = nb.train_run(causal_model, short, stream, val, tokenizer, tmp_path / "run")
    assert history["val"][-1][1] < history["val"][0][1] - 0.5
    assert history["val"] == history["nelbo"]  # for the baseline both are its exact negative log-likelihood
    assert nb.get_config("quick").train_baseline and not nb.get_config("budget_100").train_baseline


def test_the_baseline_trains_on_its_share_of_the_diffusion_models_micro_batches(nb, shape):
    for mode, steps in (("cpu", 600), ("quick", 2_000), ("smoke", 60)):
        cfg = nb.get_config(mode)
        baseline = nb.baseline_config(cfg, shape)
        assert baseline.model == dataclasses.replace(shape, causal=True) and baseline.micro_steps == steps
        assert dataclasses.replace(baseline, model=cfg.model, micro_steps=cfg.micro_steps) == cfg  # nothing else
    assert nb.baseline_config(nb.get_config("smoke", {"baseline_share": 0.001}), shape).micro_steps == 1
    accumulating = nb.get_config("smoke", {"grad_accum": 4, "micro_steps": 40, "baseline_share": 0.3})
    assert nb.baseline_config(accumulating, shape).micro_steps == 12  # 3 whole updates of 4 micro-batches
