"""The evaluation: its NELBO against a brute-force evaluation of the bound, the tokens it counts, its step grid,
and its precision."""

import itertools
import math
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

PAD, BOS, EOS, MASK = 0, 1, 2, 3
WORDS = [4, 5, 6]
PREFIX = [BOS, 5]  # the toy chat prefix: [BOS] and one more token


class ToyTokenizer(SimpleNamespace):
    """Special tokens 0-3, then words whose text is 1, 2 and 3 bytes long."""

    vocab = {"[PAD]": PAD, "[BOS]": BOS, "[EOS]": EOS, "[MASK]": MASK, "a": 4, "bb": 5, "ccc": 6}

    def __len__(self):
        return len(self.vocab)

    def get_vocab(self):
        return self.vocab


def toy_tokenizer():
    return ToyTokenizer(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, mask_token_id=MASK,
                        all_special_ids=[PAD, BOS, EOS, MASK], encode=lambda text: PREFIX)


def toy_model(nb, length, T):
    torch.manual_seed(0)
    config = nb.ModelConfig(vocab_size=7, seq_len=length, d_model=16, n_layers=1, n_heads=2, d_ff=32, diffusion_steps=T)
    model = nb.DiffusionLM(config).eval()
    with torch.no_grad():
        model.tok_emb.weight.mul_(40)  # confident, position-dependent predictions, far from uniform
        for block in model.blocks:
            block.gate1.normal_(std=0.5)
            block.gate2.normal_(std=0.5)
    return model


def predictions(model, x_t):
    with torch.no_grad():
        return model(torch.tensor([x_t]))[0].softmax(-1)


def kl(q, p):
    return sum(qv * math.log(qv / p[v]) for v, qv in q.items() if qv > 0)


def brute_force_terms(model, x0, T):
    """The bound's terms, position by position, with every KL computed over the values x_{t-1} can take; and the
    whole bound with the KL computed over whole sequences x_{t-1}, which must be their sum."""
    per_position, joint = [0.0] * len(x0), 0.0
    for t in range(1, T + 1):
        for hidden in itertools.product([False, True], repeat=len(x0)):
            q_xt = math.prod(t / T if h else 1 - t / T for h in hidden)
            x_t = [MASK if h else tok for tok, h in zip(x0, hidden, strict=True)]
            probs = predictions(model, x_t)
            q, p = {}, {}  # per position: the distributions of x_{t-1}^i under q and under the model
            for i in (i for i in range(len(x0)) if hidden[i]):
                stay = 0.0 if t == 1 else (t - 1) / t  # at t = 1 every hidden token must be revealed
                q[i] = {MASK: stay, x0[i]: 1 - stay}
                p[i] = {MASK: stay, **{w: float(probs[i, w]) * (1 - stay) for w in WORDS}}
                per_position[i] += q_xt * kl(q[i], p[i])
            for x_prev in itertools.product(*[[MASK, *WORDS] if i in q else [None] for i in range(len(x0))]):
                qj = math.prod(q[i].get(v, 0.0) for i, v in enumerate(x_prev) if i in q)
                if qj > 0:
                    joint += q_xt * qj * math.log(qj / math.prod(p[i][v] for i, v in enumerate(x_prev) if i in q))
    return per_position, joint


def test_nelbo_estimate_matches_the_brute_force_bound_on_the_story_tokens(nb):
    x0, T = [4, 6, 5], 4
    model = toy_model(nb, len(x0), T)
    terms, joint = brute_force_terms(model, x0, T)
    assert sum(terms) == pytest.approx(joint, rel=1e-6)  # positions are independent given x_t: the KL splits
    exact = sum(terms[1:]) / 2  # the first token of a block is not scored
    estimate = nb.evaluate(model, torch.tensor([x0] * 40_000), toy_tokenizer(), "cpu", batch_size=8192)
    assert estimate["nelbo"] == pytest.approx(exact, rel=0.02)
    assert estimate["tokens"] == 2 * 40_000
    # the scored tokens, 6 and 5, are 3 and 2 bytes of text: 2 tokens per 5 bytes
    assert estimate["bpb"] == pytest.approx(estimate["nelbo"] * 2 / 5 / math.log(2), rel=1e-9)


def test_the_chat_prefix_and_each_blocks_first_token_are_not_scored(nb):
    stream = torch.tensor([BOS, 5, 4, 6, EOS, BOS, 5, 6, 4, 4, EOS, BOS])  # two stories, then a third begins
    scored = nb.story_tokens(stream.view(3, 4), toy_tokenizer())
    expected = [False, False, True, True, True, False, False, True, True, True, True, False]
    expected[0] = expected[4] = expected[8] = False  # the first token of each block of 4
    assert scored.flatten().tolist() == expected


def test_every_step_is_used_equally_often_whatever_the_number_of_blocks(nb):
    for n_blocks, T in [(640, 64), (5, 4), (3, 16), (41, 16)]:
        rows, steps = nb.evaluation_plan(n_blocks, T)
        counts = Counter(steps.tolist())
        assert sorted(counts) == list(range(1, T + 1)) and len(set(counts.values())) == 1
        assert set(rows.tolist()) == set(range(n_blocks)) and len(rows) < n_blocks + T
    rows, steps = nb.evaluation_plan(640, 64)  # when T divides the blocks: each block once, t spread evenly
    assert rows.tolist() == list(range(640)) and steps.tolist() == [1 + i * 64 // 640 for i in range(640)]


def test_evaluation_weights_every_step_equally_with_uneven_blocks(nb, model, tokenizer, shape, tiny_data,
                                                                  monkeypatch):
    _, val = tiny_data(shape.seq_len, n_val_blocks=5)
    assert len(val) == 5 and shape.diffusion_steps == 16
    seen, corrupt = [], nb.corrupt

    def recording(tokens, t, *args):  # the steps the evaluation hides tokens at
        seen.extend(t.tolist())
        return corrupt(tokens, t, *args)

    monkeypatch.setattr(nb, "corrupt", recording)
    nb.evaluate(model, val, tokenizer, "cpu", batch_size=4)
    assert Counter(seen) == {t: 1 for t in range(1, 17)}  # one row per step: 16 rows from 5 blocks


def test_both_models_are_scored_on_the_same_tokens(nb, model, tokenizer, shape, tiny_data):
    _, val = tiny_data(shape.seq_len, n_val_blocks=8)
    causal = nb.DiffusionLM(replace(shape, causal=True))
    diffusion, autoregressive = nb.evaluate(model, val, tokenizer, "cpu"), nb.evaluate(causal, val, tokenizer, "cpu")
    assert diffusion["tokens"] == autoregressive["tokens"] == int(nb.story_tokens(val, tokenizer).sum())
    prefix = nb.chat_prefix_length(tokenizer)
    assert diffusion["tokens"] < len(val) * (shape.seq_len - 1) - prefix  # the chat prefixes are left out


def test_evaluation_logits_are_fp32_when_the_blocks_run_in_bf16(nb, model, tokenizer, shape, monkeypatch):
    monkeypatch.setattr(nb, "autocast", lambda device: torch.autocast("cpu", dtype=torch.bfloat16))  # as on a GPU
    with torch.no_grad():
        model.tok_emb.weight.mul_(300)  # logits of about 16, where bf16's spacing is 0.125
    x = torch.randint(10, len(tokenizer), (2, shape.seq_len))
    at = torch.rand(2, shape.seq_len) < 0.5
    with torch.no_grad():
        logits = nb.exact_logits(model, x, at)
        with nb.autocast("cpu"):
            rounded = model(x)[at]
            features = model.hidden_states(x)[at]
        assert logits.dtype == torch.float32 and rounded.dtype == torch.bfloat16
        assert logits.abs().max() > 8
        assert torch.equal(logits, model.head(features.float()))
        assert (logits - rounded.float()).abs().max() > 0.01
