import itertools
import math

import pytest
import torch

PROMPTS = ["Once upon a time", "Tom went to the park with his big red ball and"]


def run(nb, model, tokenizer, steps=8, gen_len=24, temperature=1.0):
    return nb.generate(
        model, tokenizer, PROMPTS, gen_len, steps, temperature, top_k=20, generator=torch.Generator().manual_seed(0)
    )


def prompt_ids(nb, tokenizer):
    return [tokenizer.encode(nb.format_story(p, finished=False)) for p in PROMPTS]


def test_prompts_stay_and_nothing_is_left_masked(nb, model, tokenizer):
    tokens, trajectory = run(nb, model, tokenizer)
    for row, ids in zip(tokens, prompt_ids(nb, tokenizer), strict=True):
        assert row[: len(ids)].tolist() == ids
    assert not (tokens == tokenizer.mask_token_id).any()
    assert torch.equal(trajectory[-1], tokens)


def test_no_forbidden_special_tokens_are_generated(nb, model, tokenizer):
    with torch.no_grad():  # make the untrained model prefer special tokens: they must still never appear
        model.tok_emb.weight[: len(nb.SPECIAL_TOKENS)] *= 50
    tokens, _ = run(nb, model, tokenizer)
    for row, ids in zip(tokens, prompt_ids(nb, tokenizer), strict=True):
        generated = row[len(ids) :]
        assert not torch.isin(generated, torch.tensor(nb.banned_ids(tokenizer))).any()


@pytest.mark.parametrize("steps", [1, 5, 8, 24])
def test_masks_left_after_each_step_follow_the_schedule(nb, model, tokenizer, steps):
    gen_len = 24
    tokens, trajectory = run(nb, model, tokenizer, steps=steps, gen_len=gen_len)
    assert len(trajectory) == steps + 1
    lengths = [len(ids) for ids in prompt_ids(nb, tokenizer)]
    n_to_fill = [tokens.shape[1] - n for n in lengths]  # the shorter prompt fills more positions
    assert max(n_to_fill) > gen_len == min(n_to_fill)
    for k, state in enumerate(trajectory):
        remaining = (state == tokenizer.mask_token_id).sum(1).tolist()
        assert remaining == [math.ceil(n * (steps - k) / steps) for n in n_to_fill]


def test_revealed_tokens_never_change(nb, model, tokenizer):
    _, trajectory = run(nb, model, tokenizer, steps=12)
    for before, after in itertools.pairwise(trajectory):
        revealed = before != tokenizer.mask_token_id
        assert torch.equal(after[revealed], before[revealed])


def test_greedy_sampling_is_deterministic(nb, model, tokenizer):
    first, _ = run(nb, model, tokenizer, temperature=0)
    again, _ = run(nb, model, tokenizer, temperature=0)
    assert torch.equal(first, again)


def test_prompt_longer_than_the_sequence_is_a_clear_error(nb, model, tokenizer):
    with pytest.raises(ValueError, match="more than the model's seq_len=64. Shorten the prompt or lower gen_len"):
        nb.generate(model, tokenizer, ["word " * 80], 8, 4)


def test_decoded_story_stops_at_eos_and_shows_masks(nb, tokenizer):
    prefix = tokenizer.encode(nb.CHAT_PREFIX)
    body = tokenizer.encode("The end.")
    row = torch.tensor(
        prefix + body + [tokenizer.mask_token_id] * 2 + [tokenizer.eos_token_id] + tokenizer.encode(" Next story")
    )
    assert nb.decode_story(tokenizer, row) == "The end."
    assert nb.decode_story(tokenizer, row, show_masks=True) == "The end.██"


def test_gif_frames_are_written_and_reloaded(nb, model, tokenizer, tmp_path):
    import imageio.v3 as iio

    tokens, trajectory = run(nb, model, tokenizer)
    texts = [nb.decode_story(tokenizer, state[0], show_masks=True) for state in trajectory]
    frames = nb.render_frames(texts, [f"step {i}" for i in range(len(texts))])
    assert len({frame.shape for frame in frames}) == 1
    path = tmp_path / "out" / "inference.gif"
    nb.save_gif(frames, path)
    gif = iio.imread(path, index=None)
    assert gif.shape[0] == len(trajectory) and gif.shape[1:3] == frames[0].shape[:2]
    n_to_fill = tokens.shape[1] - len(prompt_ids(nb, tokenizer)[0])
    assert texts[0] == PROMPTS[0] + "█" * n_to_fill and "█" not in texts[-1]


def test_ancestral_sampler_keeps_prompts_and_revealed_tokens_and_finishes(nb, model, tokenizer):
    tokens, trajectory = nb.generate(
        model, tokenizer, PROMPTS, 24, 8, top_k=20, generator=torch.Generator().manual_seed(0), sampler="ancestral"
    )
    for row, ids in zip(tokens, prompt_ids(nb, tokenizer), strict=True):
        assert row[: len(ids)].tolist() == ids
    assert not (tokens == tokenizer.mask_token_id).any()
    for before, after in itertools.pairwise(trajectory):
        revealed = before != tokenizer.mask_token_id
        assert torch.equal(after[revealed], before[revealed])
    remaining = [int((state == tokenizer.mask_token_id).sum()) for state in trajectory]
    assert remaining[0] > remaining[len(remaining) // 2] > remaining[-1] == 0


def test_semi_autoregressive_blocks_fill_left_to_right(nb, model, tokenizer):
    tokens, trajectory = nb.generate(
        model, tokenizer, PROMPTS[:1], 24, 12, generator=torch.Generator().manual_seed(0), block_size=8
    )
    start = len(prompt_ids(nb, tokenizer)[0])
    rounds = len(trajectory) - 1
    assert rounds in (4, 8, 12)  # 12 // 3 rounds for each of 3 blocks of 8, fewer if a story ends early
    for state in trajectory:
        hidden = (state[0, start:] == tokenizer.mask_token_id).view(3, 8)
        for block in range(2):  # a block is touched only once the block before it is complete
            if hidden[block].any():
                assert hidden[block + 1].all()
    assert not (tokens == tokenizer.mask_token_id).any()


def test_blocks_after_the_end_of_a_story_are_skipped(nb, model, tokenizer):
    def favour_eos(module, inputs, logits):
        return logits.index_add(-1, torch.tensor([tokenizer.eos_token_id]), torch.full((*logits.shape[:-1], 1), 50.0))

    model.head.register_forward_hook(favour_eos)
    tokens, _ = nb.generate(model, tokenizer, PROMPTS[:1], 24, 12, temperature=0, block_size=8)
    start = len(prompt_ids(nb, tokenizer)[0])
    generated = tokens[0, start:]
    assert (generated[:8] == tokenizer.eos_token_id).any()
    assert (generated[8:] == tokenizer.pad_token_id).all()


def test_infilling_fills_masks_anywhere_and_keeps_the_rest(nb, model, tokenizer):
    prompt = "Tom had a " + "[MASK]" * 3 + " and a big " + "[MASK]" * 2 + ". The end."
    tokens, _ = nb.generate(model, tokenizer, [prompt], 0, 5, generator=torch.Generator().manual_seed(0))
    template = torch.tensor(tokenizer.encode(nb.format_story(prompt, finished=False)))
    holes = template == tokenizer.mask_token_id
    assert holes.sum() == 5 and tokens.shape == (1, len(template))
    assert torch.equal(tokens[0][~holes], template[~holes])
    assert not (tokens == tokenizer.mask_token_id).any()
    assert nb.decode_story(tokenizer, tokens[0]).startswith("Tom had a ")


def test_unknown_sampler_is_a_clear_error(nb, model, tokenizer):
    with pytest.raises(ValueError, match="Unknown sampler 'greedy'; choose one of"):
        nb.generate(model, tokenizer, PROMPTS, 8, 4, sampler="greedy")


def test_sample_quality_statistics(nb, tokenizer):
    prefix = tokenizer.encode(nb.CHAT_PREFIX)
    eos = tokenizer.eos_token_id
    looping = prefix + tokenizer.encode("the dog ran the dog ran") + [eos]
    unfinished = prefix + tokenizer.encode("a cat sat")
    width = max(len(looping), len(unfinished))
    rows = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in (looping, unfinished)]
    report = nb.sample_quality(tokenizer, torch.tensor(rows))
    # words: the dog ran the dog ran | a cat sat
    assert report["distinct-1"] == pytest.approx(6 / 9)
    assert report["distinct-2"] == pytest.approx(5 / 7)  # the-dog, dog-ran, ran-the, a-cat, cat-sat
    assert report["distinct-3"] == pytest.approx(4 / 5)
    assert report["repetition"] == pytest.approx((1 / 4 + 0) / 2)  # "the dog ran" comes back once
    assert report["ended"] == 0.5 and report["length"] == 4.5


def test_sampler_comparison_covers_each_sampler_and_step_count(nb, model, tokenizer, cfg):
    rows = nb.compare_samplers(model, tokenizer, cfg, "cpu", n_samples=2)
    T = cfg.diffusion_steps
    assert [(r["sampler"], r["steps"]) for r in rows] == [
        (name, steps) for name in ("confidence", "ancestral", "semi-AR (blocks of 32)") for steps in (T // 4, T // 2, T)
    ]
    table = nb.format_table(rows)
    assert table.splitlines()[0].startswith("| sampler | steps | distinct-1 |") and len(table.splitlines()) == 11
