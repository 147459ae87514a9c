"""The ELBO estimate against a brute-force evaluation of the bound's definition on a toy vocabulary."""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

PAD, BOS, EOS, MASK = 0, 1, 2, 3
WORDS = [4, 5, 6]
TOY_TOKENIZER = SimpleNamespace(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, mask_token_id=MASK)


def toy_model(nb, length, T):
    torch.manual_seed(0)
    model = nb.DiffusionLM(
        vocab_size=7, seq_len=length, diffusion_steps=T, d_model=16, n_layers=1, n_heads=2, d_ff=32, dropout=0.0
    ).eval()
    with torch.no_grad():
        model.tok_emb.weight.mul_(40)  # confident, position-dependent predictions, far from uniform
    return model


def predictions(model, x_t, t):
    with torch.no_grad():
        return model(torch.tensor([x_t]), torch.tensor([t]))[0].softmax(-1)


def brute_force_nelbo(model, x0, T):
    """Sum over every masking pattern of the bound's terms, with the KLs computed over every x_{t-1}."""
    total = 0.0
    for t in range(1, T + 1):
        for hidden in itertools.product([False, True], repeat=len(x0)):
            q_xt = math.prod(t / T if h else 1 - t / T for h in hidden)
            x_t = [MASK if h else tok for tok, h in zip(x0, hidden, strict=True)]
            probs = predictions(model, x_t, t)
            if t == 1:  # reconstruction: every hidden token must be revealed as x0
                total += q_xt * -sum(math.log(probs[i, x0[i]]) for i in range(len(x0)) if hidden[i])
                continue
            kl = 0.0
            options = [[MASK] + WORDS if h else [tok] for tok, h in zip(x0, hidden, strict=True)]
            for x_prev in itertools.product(*options):
                q = p = 1.0
                for i, v in enumerate(x_prev):
                    if not hidden[i]:
                        continue
                    q *= (t - 1) / t if v == MASK else (1 / t if v == x0[i] else 0.0)
                    p *= (t - 1) / t if v == MASK else float(probs[i, v]) / t
                if q > 0:
                    kl += q * math.log(q / p)
            total += q_xt * kl
    return total


def test_nelbo_estimate_matches_the_brute_force_bound(nb):
    x0, T = [4, 6, 5], 4
    model = toy_model(nb, len(x0), T)
    exact = brute_force_nelbo(model, x0, T) / len(x0)
    cfg = SimpleNamespace(diffusion_steps=T, batch_size=4096)
    blocks = torch.tensor([x0] * 40_000)
    estimate = nb.evaluate(model, blocks, cfg, TOY_TOKENIZER, "cpu")
    assert estimate["nelbo"] == pytest.approx(exact, rel=0.02)


def test_the_bound_is_one_over_t_weighted_cross_entropy(nb):
    """The closed form the notebook uses, evaluated exactly, equals the brute-force sum of KLs."""
    x0, T = [5, 4], 3
    model = toy_model(nb, len(x0), T)
    closed_form = 0.0
    for t in range(1, T + 1):
        for hidden in itertools.product([False, True], repeat=len(x0)):
            x_t = [MASK if h else tok for tok, h in zip(x0, hidden, strict=True)]
            probs = predictions(model, x_t, t)
            ce = -sum(math.log(probs[i, x0[i]]) for i in range(len(x0)) if hidden[i])
            closed_form += math.prod(t / T if h else 1 - t / T for h in hidden) * ce / t
    assert closed_form == pytest.approx(brute_force_nelbo(model, x0, T), rel=1e-6)
