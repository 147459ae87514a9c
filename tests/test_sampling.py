import itertools
import math
import re

import pytest
import torch

PROMPTS = ["Once upon a time", "Tom went to the park with his big red ball and"]


def run(nb, model, tokenizer, steps=8, gen_len=24, temperature=1.0, seed=0, on_step=None, **options):
    sampling = nb.Sampling(steps, temperature, top_k=20, gen_len=gen_len, **options)
    return nb.generate(model, tokenizer, PROMPTS, sampling, generator=torch.Generator().manual_seed(seed),
                       on_step=on_step)


def prompt_ids(nb, tokenizer):
    return [tokenizer.encode(nb.format_story(p, finished=False)) for p in PROMPTS]


def ended(tokens, tokenizer):
    return [tokenizer.eos_token_id in row.tolist() for row in tokens]


def test_prompts_stay_and_nothing_is_left_hidden(nb, model, tokenizer):
    tokens, trajectory = run(nb, model, tokenizer)
    for row, ids in zip(tokens, prompt_ids(nb, tokenizer), strict=True):
        assert row[: len(ids)].tolist() == ids
    assert not (tokens == tokenizer.mask_token_id).any()
    assert torch.equal(trajectory[-1], tokens)


def test_the_canvas_fills_the_model_by_default(nb, model, tokenizer, shape):
    tokens, _ = nb.generate(model, tokenizer, PROMPTS[:1], nb.Sampling(steps=4))
    assert tokens.shape == (1, shape.seq_len)


def test_a_story_holds_no_special_token_and_ends_with_eos(nb, model, tokenizer):
    with torch.no_grad():  # make the untrained model prefer special tokens: none may appear inside a story
        model.tok_emb.weight[: len(nb.SPECIAL_TOKENS)] *= 50
    tokens, _ = run(nb, model, tokenizer)
    for row, ids in zip(tokens, prompt_ids(nb, tokenizer), strict=True):
        story = row[len(ids) :].tolist()
        end = story.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in story else len(story)
        assert not set(story[:end]) & set(tokenizer.all_special_ids)
        assert all(i == tokenizer.pad_token_id for i in story[end + 1 :])  # after the end: filler only


@pytest.mark.parametrize("steps", [1, 5, 8, 24])
def test_masks_left_after_each_step_follow_the_schedule(nb, model, tokenizer, steps):
    tokens, trajectory = run(nb, model, tokenizer, steps=steps, gen_len=24)
    assert len(trajectory) == steps + 1 and all(ended(tokens, tokenizer))
    n_to_fill = (trajectory[0] == tokenizer.mask_token_id).sum(1).tolist()  # up to each story's drawn end
    ends = [row.index(tokenizer.eos_token_id) for row in trajectory[0].tolist()]
    assert n_to_fill == [end - len(ids) for end, ids in zip(ends, prompt_ids(nb, tokenizer), strict=True)]
    for k, state in enumerate(trajectory):
        remaining = (state == tokenizer.mask_token_id).sum(1).tolist()
        assert remaining == [math.ceil(n * (steps - k) / steps) for n in n_to_fill]


def test_the_end_is_drawn_in_proportion_to_the_model_s_eos_probabilities(nb, tokenizer, shape):
    """Two given words, the first of them followed by [MASK], then three positions: [EOS] is 0.2, 0.1, 0.0 and 0.5
    likely at the four hidden ones. A story can only end after the last given word, so it ends at the third, fourth or
    fifth position in proportion 0.1 : 0 : 0.5, with [EOS] there and [PAD] after; at temperature 0 (no uniform
    numbers), always at the likeliest. With nothing hidden after the last given word, no end is drawn."""
    eos, pad, mask = tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id
    probs = torch.full((6, len(tokenizer)), 1.0)
    eos_probs = torch.tensor([0.2, 0.1, 0.0, 0.5])  # at the four hidden positions; the rest shared evenly
    probs[[1, 3, 4, 5], eos] = eos_probs * (len(tokenizer) - 1) / (1 - eos_probs)
    model = FixedDenoiser(shape, probs / probs.sum(-1, keepdim=True))
    n, word = 20_000, tokenizer.encode("the")[0]
    x = torch.tensor([word, mask, word, mask, mask, mask]).repeat(n, 1)
    ids = nb.sampler_ids(tokenizer, torch.device("cpu"))
    out = nb.draw_ends(model, x, ids, torch.rand(x.shape, generator=torch.Generator().manual_seed(0)))
    ends = (out == eos).int().argmax(1)
    assert ((out == eos).sum(1) == 1).all() and torch.equal(out[:, :3], x[:, :3])
    after = torch.arange(6) > ends[:, None]
    assert (out[after] == pad).all() and not (out[~after] == pad).any()
    shares = torch.bincount(ends, minlength=6) / n
    assert torch.allclose(shares, torch.tensor([0, 0, 0, 1 / 6, 0, 5 / 6]), atol=0.01)
    assert (nb.draw_ends(model, x[:3], ids, None) == torch.tensor([word, mask, word, mask, mask, eos])).all()
    infill = torch.tensor([[word, mask, word, mask, mask, word]])  # nothing hidden after the last given word
    assert torch.equal(nb.draw_ends(model, infill, ids, None), infill)


def test_revealed_tokens_never_change(nb, model, tokenizer):
    _, trajectory = run(nb, model, tokenizer, steps=12, seed=3)
    for before, after in itertools.pairwise(trajectory):
        revealed = before != tokenizer.mask_token_id
        assert torch.equal(after[revealed], before[revealed])


def test_greedy_sampling_is_deterministic(nb, model, tokenizer):
    first, _ = run(nb, model, tokenizer, temperature=0, reveal_temperature=0)
    again, _ = run(nb, model, tokenizer, temperature=0, reveal_temperature=0, seed=1)
    assert torch.equal(first, again)


def test_sampling_is_reproducible_with_a_generator_on_the_cpu(nb, model, tokenizer):
    assert torch.equal(run(nb, model, tokenizer, seed=4)[0], run(nb, model, tokenizer, seed=4)[0])
    assert not torch.equal(run(nb, model, tokenizer, seed=4)[0], run(nb, model, tokenizer, seed=5)[0])


def test_draws_follow_the_probabilities(nb):
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0]]).expand(20_000, 4)
    draws = nb.draw(probs, torch.rand(probs.shape, generator=torch.Generator().manual_seed(0)))
    shares = torch.bincount(draws, minlength=4) / len(draws)
    assert torch.allclose(shares, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.015)
    assert shares[3] == 0


@pytest.mark.parametrize("reveal_temperature", [0, 1, 2])
def test_revealed_positions_are_drawn_in_proportion_to_confidence(nb, reveal_temperature):
    """Rows of four positions, the last one already revealed, one position to reveal per row: each hidden position
    is picked with a probability proportional to confidence ** (1 / reveal_temperature); at 0, the most confident."""
    n, confidence = 20_000, torch.tensor([0.6, 0.3, 0.1])
    active = torch.tensor([True, True, True, False]).repeat(n, 1)
    reveal = nb.choose_reveals(torch.cat([confidence, torch.ones(1)]).repeat(n, 1), active, torch.full((n, 1), 2),
                               reveal_temperature, torch.rand(n, 4, generator=torch.Generator().manual_seed(0)))
    assert (reveal.sum(1) == 1).all() and not reveal[:, 3].any()
    if reveal_temperature == 0:
        expected = torch.tensor([1.0, 0.0, 0.0])
    else:
        weights = confidence ** (1 / reveal_temperature)
        expected = weights / weights.sum()
    assert torch.allclose(reveal[:, :3].float().mean(0), expected, atol=0.015)


def test_picked_tokens_come_from_the_top_k_with_their_renormalised_probabilities(nb):
    logits = torch.tensor([3.0, 1.0, 2.0, 0.0, float("-inf")]).log_softmax(-1).expand(4, 5_000, 5)
    tokens, confidence = nb.pick_tokens(logits, nb.Sampling(temperature=1.0, top_k=2), torch.rand(4, 5_000, 2))
    assert tokens.shape == confidence.shape == (4, 5_000)
    top_two = torch.tensor([3.0, 2.0]).softmax(-1)  # tokens 0 and 2
    shares = torch.bincount(tokens.flatten(), minlength=5) / tokens.numel()
    assert torch.allclose(shares, torch.tensor([top_two[0], 0, top_two[1], 0, 0]), atol=0.01)
    assert torch.allclose(confidence, torch.where(tokens == 0, top_two[0], top_two[1]))
    hotter, _ = nb.pick_tokens(logits, nb.Sampling(temperature=2.0, top_k=0), torch.rand(4, 5_000, 5))  # all but -inf
    shares = torch.bincount(hotter.flatten(), minlength=5) / hotter.numel()
    assert torch.allclose(shares, (logits[0, 0] / 2).softmax(-1), atol=0.01) and shares[4] == 0
    greedy, sure = nb.pick_tokens(logits, nb.Sampling(temperature=0, top_k=2), None)
    assert (greedy == 0).all() and torch.allclose(sure, logits[0, 0].softmax(-1)[0])


@pytest.mark.parametrize("top_p, kept", [(0.5, [0]), (0.8, [0, 2]), (0.95, [0, 2, 1]), (1.0, [0, 2, 1, 3])])
def test_top_p_keeps_the_fewest_likeliest_tokens_that_hold_that_share(nb, top_p, kept):
    probs = torch.tensor([0.6, 0.1, 0.25, 0.05])  # sorted: 0 (0.6), 2 (0.85 so far), 1 (0.95), 3 (1.0)
    logits = probs.log().expand(4, 5_000, 4)
    tokens, confidence = nb.pick_tokens(logits, nb.Sampling(temperature=1.0, top_k=0, top_p=top_p),
                                        torch.rand(4, 5_000, 4))
    expected = torch.zeros(4).index_put_((torch.tensor(kept),), probs[kept] / probs[kept].sum())
    shares = torch.bincount(tokens.flatten(), minlength=4) / tokens.numel()
    assert torch.allclose(shares, expected, atol=0.01) and torch.allclose(confidence, expected[tokens])


class FixedDenoiser(torch.nn.Module):
    """A stand-in model that predicts the same distributions, probs (length, vocabulary), whatever it reads."""

    def __init__(self, config, probs):
        super().__init__()
        self.config, self.log_probs = config, probs.log()

    def forward(self, idx):
        return self.log_probs.repeat(len(idx), 1, 1)  # a fresh tensor, as a real model returns


A, E = 20, 24  # the likeliest tokens of the two hidden positions in one_round


def one_round(nb, tokenizer, shape, sampling, n=40_000):
    """n rows of two given words and two hidden positions, one of which a round reveals: at the first, tokens A and
    A + 1 with probabilities 0.6 and 0.4; at the second, A + 2, A + 3 and E with 0.3, 0.3 and 0.4. Returns the rows
    after the round, and where the first position was the one revealed."""
    probs = torch.full((4, len(tokenizer)), 1e-12)
    probs[2, [A, A + 1]], probs[3, [A + 2, A + 3, E]] = torch.tensor([0.6, 0.4]), torch.tensor([0.3, 0.3, 0.4])
    model = FixedDenoiser(shape, probs / probs.sum(-1, keepdim=True))
    word = tokenizer.encode("the")[0]
    x = torch.tensor([word, word, tokenizer.mask_token_id, tokenizer.mask_token_id]).repeat(n, 1)
    canvas = nb.Canvas(x, x == tokenizer.mask_token_id)
    torch.manual_seed(0)
    noise = nb.round_noise(x.shape, sampling, len(tokenizer), None, "cpu")
    out = nb.sampling_round(model, canvas, nb.sampler_ids(tokenizer, torch.device("cpu")),
                            (torch.tensor(1), torch.tensor(2)), noise, sampling)
    first = out[:, 2] != tokenizer.mask_token_id
    assert (first ^ (out[:, 3] != tokenizer.mask_token_id)).all()  # exactly one of the two revealed
    return out, first


@pytest.mark.parametrize("reveal_temperature", [0.5, 1])
@pytest.mark.parametrize("confidence", ["likeliest", "margin"])
def test_where_the_sampler_reveals_does_not_depend_on_what_it_drew(nb, tokenizer, shape, reveal_temperature,
                                                                  confidence):
    """The first position is revealed with a probability proportional to its confidence ** (1 / reveal_temperature),
    its likeliest token's probability (0.6 against 0.4) or the margin between its two likeliest (0.2 against 0.1),
    and the token revealed there follows the model's own distribution, not one skewed towards the tokens it is surer
    of."""
    sampling = nb.Sampling(2, temperature=1.0, top_k=0, reveal_temperature=reveal_temperature, confidence=confidence)
    out, first = one_round(nb, tokenizer, shape, sampling)
    weights = torch.tensor([0.6, 0.4] if confidence == "likeliest" else [0.2, 0.1]) ** (1 / reveal_temperature)
    assert first.float().mean().item() == pytest.approx((weights[0] / weights.sum()).item(), abs=0.01)
    assert (out[first, 2] == A).float().mean().item() == pytest.approx(0.6, abs=0.01)
    assert (out[~first, 3] == E).float().mean().item() == pytest.approx(0.4, abs=0.01)


def test_ranking_by_the_drawn_token_skews_what_is_revealed_towards_likely_tokens(nb, tokenizer, shape):
    """The coupled order ("drawn"): a position is revealed more often when its draw was likely, so the tokens revealed
    there are likelier than the model's own distribution says. The first position holds A (probability 0.6) or A + 1
    (0.4), the second a token of probability 0.3 (twice as often) or 0.4, and the first is revealed with probability
    c1 / (c1 + c2): A is revealed there 0.6 · (0.6 · 0.6/0.9 + 0.4 · 0.6/1.0) = 0.384 of the time, A + 1
    0.4 · (0.6 · 0.4/0.7 + 0.4 · 0.4/0.8) = 0.217, so A makes 0.639 of the first position's reveals, not 0.6."""
    sampling = nb.Sampling(2, temperature=1.0, top_k=0, reveal_temperature=1, confidence="drawn")
    out, first = one_round(nb, tokenizer, shape, sampling)
    assert (out[first, 2] == A).float().mean().item() == pytest.approx(0.384 / (0.384 + 0.2171), abs=0.01)


def rows_of(nb, tokenizer, stories, ended=True):
    return nb.story_rows(tokenizer, stories, 200) if ended else torch.tensor(
        [tokenizer.encode(nb.CHAT_PREFIX + story) for story in stories])


def test_repetition_distinct_pairs_length_and_endings_of_hand_made_stories(nb, tokenizer):
    looping, unfinished = "the dog ran the dog ran", "a cat sat"
    measures = nb.story_measures(tokenizer, rows_of(nb, tokenizer, [looping]), [["a"]], set())
    assert measures["repetition"] == pytest.approx(1 / 4)  # of the/dog/ran, dog/ran/the, ran/the/dog, the/dog/ran
    assert measures["distinct-2"] == pytest.approx(3 / 5) and measures["length"] == 6 and measures["ended"] == 1
    assert nb.story_measures(tokenizer, rows_of(nb, tokenizer, [unfinished], ended=False), [["a"]], set())["ended"] == 0


def test_n_gram_divergence_is_zero_for_the_same_text_and_one_for_text_that_shares_nothing(nb):
    stories = [["a", "b", "c", "d", "e"], ["a", "c", "e"]]
    assert nb.ngram_divergence(stories, stories) == 0
    assert nb.ngram_divergence(stories, [["v", "w", "x", "y", "z"]]) == pytest.approx(1)


def test_loops_score_worse_than_varied_stories_against_real_ones(nb, tokenizer, stories):
    """Held-out stories against the first 40: others from the same source diverge less, and repeat less, than
    stories that loop on one sentence of theirs."""
    reference = [story.split() for story in stories[:40]]
    varied = stories[40:80]
    looping = [" ".join([story.split(".")[0] + "."] * 6) for story in stories[40:80]]
    varied, looping = (nb.story_measures(tokenizer, rows_of(nb, tokenizer, batch), reference, set())
                       for batch in (varied, looping))
    assert looping["divergence"] > varied["divergence"] + 0.1
    assert looping["repetition"] > 0.5 > 0.2 > varied["repetition"]


def test_copies_of_training_text_are_flagged(nb, tokenizer, stories):
    training, copies = stories[:100], stories[:5]
    new = ["Zed the zebra sang to the moon and the moon sang back to the small striped zebra all night long."]
    samples = rows_of(nb, tokenizer, copies + new)
    eights = {g for row in samples for g in nb.ngrams(nb.decode_story(tokenizer, row).split(), 8)}
    copied = nb.grams_in_text(eights, training)
    assert nb.story_measures(tokenizer, rows_of(nb, tokenizer, copies), [["a"]], copied)["copied 8-grams"] == 1
    assert nb.story_measures(tokenizer, rows_of(nb, tokenizer, new), [["a"]], copied)["copied 8-grams"] == 0


def test_the_sampler_comparison_measures_every_sampler_against_held_out_stories(nb, model, tokenizer, cfg, stories,
                                                                                 tmp_path):
    T = cfg.model.diffusion_steps
    rows = nb.compare_samplers(model, tokenizer, nb.sampler_settings(nb.Sampling(), T), 2, stories[:8], stories[8:60],
                               "cpu")
    assert [(r["stories"], r["rounds"]) for r in rows] == [("held-out stories", "")] + [
        (name, steps)
        for name in ("confidence", "most confident first", "ancestral", "semi-AR (blocks of 32)")
        for steps in (T // 4, T // 2, T)
    ]
    assert rows[0]["excess divergence"] == 0 and all(r["excess divergence"] > 0 for r in rows[1:])  # untrained
    assert list(rows[0])[:3] == ["stories", "rounds", "excess divergence"] and len(rows) == 13
    fig = nb.plot_quality(rows, tmp_path / "quality.png")
    assert (tmp_path / "quality.png").stat().st_size > 0
    for ax in fig.axes:  # each measure against the rounds measured, ticked and labelled there alone
        assert [label.get_text() for label in ax.get_xticklabels()] == [str(s) for s in (T // 4, T // 2, T)]
        assert len(ax.get_xticks(minor=True)) == 0
    nb.plt.close(fig)


@pytest.mark.parametrize("setting, says", [
    ({"sampler": "greedy"}, "sampler=greedy (one of ('confidence', 'ancestral'))"),
    ({"confidence": "sure"}, "confidence=sure (one of ('likeliest', 'margin', 'drawn'))"),
    ({"steps": 0}, "steps=0 (None for the model's T, or at least 1)"), ({"temperature": -1}, "temperature=-1 (0 for"),
    ({"top_p": 0}, "top_p=0 (a share"), ({"top_p": 1.5}, "top_p=1.5 (a share"),
    ({"reveal_temperature": -0.5}, "reveal_temperature=-0.5 (0 for"), ({"block_size": 0}, "block_size=0 (None, or"),
    ({"top_p": 2, "block_size": 0}, "top_p=2 (a share of the probability in (0, 1], e.g. 0.9; 1 keeps all); "
                                    "block_size=0"),  # every setting out of range, in one message
])
def test_a_sampling_setting_out_of_range_is_refused_with_what_to_use(nb, setting, says):
    with pytest.raises(ValueError, match=re.escape(f"Settings out of range: {says}") + ".*Change them in Sampling"):
        nb.Sampling(**setting)
