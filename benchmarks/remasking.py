"""Remasking (ReMDM's confidence form, Wang et al. 2025) on the notebook's confidence sampler, for samplers.py.

The notebook's sampler never takes a token back. With remasking, in every round from `remask_from` of the rounds on
(but the last), the sampler hides `remask_share` of a story's positions again after revealing: revealed tokens drawn
at random, each in proportion to one minus its probability when it was drawn, so that unlikely draws are likelier to
be redrawn. It reveals as many more in the same round, so the number still hidden follows the notebook's schedule and
a story takes the same rounds. The prompt and the story's end (drawn first) are never hidden again.
"""

import dataclasses

import torch


def install(nb):
    """Teach the notebook's definitions `nb` to remask: returns Remasking, nb.Sampling with two more settings, and
    makes nb.generate remask wherever it is given a Remasking whose remask_share is above 0."""

    @dataclasses.dataclass(frozen=True)
    class Remasking(nb.Sampling):
        remask_share: float = 0.0  # of a story's positions hidden again in each round of the window
        remask_from: float = 0.5  # the share of the rounds done when remasking starts

    Remasking.__qualname__ = "Remasking"  # as the table's header prints it
    plain_generate = nb.generate

    def generate(model, tokenizer, prompts, sampling, device="cpu", *args, **kwargs):
        if getattr(sampling, "remask_share", 0) > 0:
            return remasking_generate(nb, model, tokenizer, prompts, sampling, device)
        return plain_generate(model, tokenizer, prompts, sampling, device, *args, **kwargs)

    nb.generate = generate
    return Remasking


@torch.no_grad()
def remasking_generate(nb, model, tokenizer, prompts, sampling, device):
    """The notebook's generate() for the confidence sampler (no blocks, not compiled), with remasking."""
    model.eval()
    ids = nb.sampler_ids(tokenizer, torch.device(device))
    x = nb.encode_prompts(tokenizer, prompts, model.config.seq_len, sampling.gen_len).to(device)
    x = nb.draw_ends(model, x, ids, torch.rand(x.shape, device=device) if sampling.temperature else None)
    region = x == ids.mask  # up to each story's end
    rounds = sampling.steps or model.config.diffusion_steps
    drawn_with = torch.ones(x.shape, dtype=torch.float64, device=device)  # each token's probability when drawn
    trajectory = [x.cpu()]
    for s in range(rounds, 0, -1):
        active = region & (x == ids.mask)
        if not active.any():
            break
        noise = nb.round_noise(x.shape, sampling, model.config.vocab_size, None, device)
        proposal, confidence = nb.propose(model, x, active, ids, sampling, noise[0])
        # the same draw again, for the drawn token's probability (twice the model's work: this measures quality)
        _, probability = nb.propose(model, x, active, ids, dataclasses.replace(sampling, confidence="drawn"),
                                    noise[0])
        n = region.sum(1, keepdim=True)
        still_hidden = (n * (s - 1) + rounds - 1) // rounds
        again = (n * sampling.remask_share).round().long().clamp(max=still_hidden)
        if s == 1 or 1 - s / rounds < sampling.remask_from:
            again = torch.zeros_like(again)
        revealed = region & (x != ids.mask)  # before this round
        reveal = nb.choose_reveals(confidence, active, still_hidden - again, sampling.reveal_temperature, noise[1])
        drawn_with = torch.where(reveal, probability.double(), drawn_with)
        x = torch.where(reveal, proposal, x)
        uniform = torch.rand(x.shape, dtype=torch.float64, device=device)
        hide = nb.choose_reveals(1 - drawn_with, revealed, revealed.sum(1, keepdim=True) - again, 1.0, uniform)
        x = torch.where(hide, ids.mask, x)
        trajectory.append(x.cpu())
    return x.cpu(), trajectory
