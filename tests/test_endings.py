"""A model trained by the notebook learns where stories end, and its stories end: shown on a small model trained
here, on stories whose endings can be learned from their text ("... The end.")."""

import dataclasses
import random

import pytest
import torch

from synthetic_stories import ANIMALS, FEELINGS, NAMES, PLACES, THINGS

SENTENCES = [
    "{name} saw a {animal} in the {place}.",
    "The {animal} had a {thing}.",
    "{name} felt {feeling}.",
    "They played with the {thing} all day.",
    "{name} went home.",
]


def story(rng):
    words = {"name": rng.choice(NAMES), "animal": rng.choice(ANIMALS), "place": rng.choice(PLACES),
             "thing": rng.choice(THINGS), "feeling": rng.choice(FEELINGS)}
    return " ".join(s.format(**words) for s in rng.sample(SENTENCES, rng.randint(2, 4))) + " The end."


@pytest.fixture(scope="module")
def trained(nb, tmp_path_factory):
    rng = random.Random(0)
    stories = [story(rng) for _ in range(600)]
    tokenizer = nb.train_tokenizer(stories, 300)
    shape = nb.ModelConfig(len(tokenizer), seq_len=96, d_model=64, n_layers=2, n_heads=2, d_ff=256, diffusion_steps=16)
    cfg = dataclasses.replace(nb.get_config("smoke"), model=shape, micro_steps=600, batch_size=16, lr=3e-3,
                              warmup_steps=20, evals_per_run=1, log_every=100, checkpoints_per_run=1)
    stream = nb.tokenize_stories(tokenizer, stories[:500])
    val = nb.fixed_blocks(nb.tokenize_stories(tokenizer, stories[500:]), shape.seq_len, 16)
    torch.manual_seed(0)
    model = nb.DiffusionLM(shape)
    nb.train_run(model, cfg, stream, val, tokenizer, tmp_path_factory.mktemp("run"))
    return model.eval(), tokenizer, stories[500:]


def test_eos_ranks_near_the_top_at_the_true_ends_of_held_out_stories(nb, trained):
    model, tokenizer, held_out = trained
    ranks = torch.tensor(nb.end_of_story_ranks(model, tokenizer, held_out, "cpu"), dtype=torch.float)
    assert len(ranks) == len(held_out)  # every story fits the canvas
    chance = (len(tokenizer) - len(nb.banned_ids(tokenizer))) / 2
    assert ranks.median() <= 5 < chance / 20 and (ranks <= 10).float().mean() > 0.7


def test_every_sampled_story_ends_and_nothing_follows_the_end(nb, trained):
    model, tokenizer, _ = trained
    tokens, trajectory = nb.generate(model, tokenizer, ["Mia saw a cat"] * 16, nb.Sampling(steps=16),
                                     generator=torch.Generator().manual_seed(0))
    assert nb.story_measures(tokenizer, tokens, [["a"]], set())["ended"] == 1
    start = len(tokenizer.encode(nb.format_story("Mia saw a cat", finished=False)))
    for row in tokens.tolist():
        end = row.index(tokenizer.eos_token_id)
        assert not set(row[start:end]) & set(tokenizer.all_special_ids)  # the story's text holds no special token
        assert set(row[end + 1 :]) <= {tokenizer.pad_token_id}  # the rest of the canvas is filler
    assert not (tokens == tokenizer.mask_token_id).any() and len(trajectory) == 17


def test_semi_autoregressive_blocks_run_left_to_right_up_to_the_story_s_end(nb, trained):
    model, tokenizer, _ = trained
    prompt, mask = "Ben saw a frog in the park. The frog had a hat.", tokenizer.mask_token_id
    start = len(tokenizer.encode(nb.format_story(prompt, finished=False)))
    steps = 4 * -(-(model.config.seq_len - start) // 16)  # 4 rounds for each block of 16 positions of the canvas
    tokens, trajectory = nb.generate(model, tokenizer, [prompt], nb.Sampling(steps, block_size=16),
                                     generator=torch.Generator().manual_seed(0))
    story = tokens[0, start:].tolist()
    end = story.index(tokenizer.eos_token_id)
    blocks = -(-end // 16)  # the blocks that hold the story, fewer than the canvas's
    assert blocks < steps // 4 and len(trajectory) - 1 == blocks * (steps // blocks)
    assert set(story[end + 1 :]) == {tokenizer.pad_token_id}
    for state in trajectory:
        hidden = (state[0, start : start + end] == mask).tolist()
        first = hidden.index(True) // 16 if True in hidden else blocks  # the block being filled
        assert all(hidden[(first + 1) * 16 :])  # the blocks after it have not begun
