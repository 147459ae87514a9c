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
