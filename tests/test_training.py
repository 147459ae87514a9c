import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook


def test_schedule_warms_up_then_decays_and_every_update_learns(nb):
    cfg = nb.get_config("budget_100")
    lrs = [nb.lr_at(u, cfg) for u in range(cfg.optimizer_steps)]
    assert lrs[0] == pytest.approx(cfg.lr / cfg.warmup_steps)
    assert lrs[cfg.warmup_steps - 1] == pytest.approx(cfg.lr)
    assert max(lrs) == pytest.approx(cfg.lr)
    assert lrs[(cfg.warmup_steps + cfg.optimizer_steps) // 2] == pytest.approx(cfg.lr / 2, rel=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[cfg.warmup_steps - 1 :]))
    assert 0 < lrs[-1] < 1e-6 * cfg.lr  # the cosine reaches zero one update after the last, not at it
    assert nb.lr_at(cfg.optimizer_steps, cfg) == pytest.approx(0.0, abs=1e-15)


def after_each_update(action):
    """A hook that runs action() once per optimizer update: after AdamW's step, which follows Muon's."""
    return register_optimizer_step_post_hook(
        lambda optimizer, *_: action() if isinstance(optimizer, torch.optim.AdamW) else None)


def test_the_last_update_of_a_short_run_still_moves_the_weights(nb, model, tokenizer, cfg, tiny_data, tmp_path):
    short = dataclasses.replace(cfg, micro_steps=3, warmup_steps=1, evals_per_run=1, checkpoints_per_run=1)
    stream, val = tiny_data(cfg.model.seq_len)
    snapshots = []
    handle = after_each_update(lambda: snapshots.append(model.ln_f.weight.detach().clone()))
    try:
        nb.train_run(model, short, stream, val, tokenizer, tmp_path / "run")
    finally:
        handle.remove()
    assert len(snapshots) == 3 and not torch.equal(snapshots[-2], snapshots[-1])


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest_decaying_matrices_only(nb, model, cfg):
    optimizer = nb.make_optimizer(model, cfg, "cpu")
    (muon,), (decay, no_decay) = (part.param_groups for part in optimizer.optimizers.values())
    assert list(optimizer.optimizers) == ["muon", "adamw"] and optimizer.param_groups == [muon, decay, no_decay]
    block_matrices = [p for p in model.blocks.parameters() if p.dim() == 2]
    assert len(muon["params"]) == len(block_matrices) == 4 * cfg.model.n_layers  # qkv, proj, up, down
    assert all(any(p is m for m in block_matrices) for p in muon["params"])
    assert [id(p) for p in decay["params"]] == [id(model.tok_emb.weight)]  # which the output layer shares
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert muon["weight_decay"] == decay["weight_decay"] == cfg.weight_decay
    counted = len(muon["params"]) + len(decay["params"]) + len(no_decay["params"])
    assert counted == len(list(model.parameters()))  # every parameter once

    adamw = nb.make_optimizer(model, dataclasses.replace(cfg, optimizer="adamw"), "cpu")
    decay, no_decay = adamw.param_groups
    assert isinstance(adamw, torch.optim.AdamW) and len(decay["params"]) == 1 + len(block_matrices)
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_orthogonalize_keeps_the_singular_vectors_and_brings_the_values_near_one(nb):
    torch.manual_seed(0)
    left, _ = torch.linalg.qr(torch.randn(96, 48))
    right, _ = torch.linalg.qr(torch.randn(48, 48))
    values = torch.logspace(-2, 0, 48)  # a gradient's spread: the largest 100 times the smallest
    tall = left @ torch.diag(values) @ right.T
    for matrix, u, v in ((tall, left, right), (tall.T, right, left)):
        out = nb.orthogonalize(matrix)
        in_basis = u.T @ out @ v  # diagonal if the singular vectors are kept
        assert out.shape == matrix.shape and out.dtype == matrix.dtype
        assert (in_basis - torch.diag(in_basis.diagonal())).abs().max() < 1e-4
        assert in_basis.diagonal().min() > 0.6 and in_basis.diagonal().max() < 1.25
    batch = torch.stack([tall, 3 * tall.flip(0)])  # Muon orthogonalises the matrices of one shape together
    assert torch.allclose(nb.orthogonalize(batch), torch.stack([nb.orthogonalize(m) for m in batch]), atol=1e-6)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon arrived in torch 2.9")
def test_muon_takes_the_steps_torch_optim_muon_takes(nb):
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Parameter(torch.randn(64, 32)) for _ in range(2))
    theirs.data.copy_(ours.data)
    start = ours.detach().clone()
    optimizers = (nb.Muon([ours], lr=0.01, weight_decay=0.1),
                  torch.optim.Muon([theirs], lr=0.01, weight_decay=0.1, adjust_lr_fn="match_rms_adamw"))
    for _ in range(3):
        gradient = torch.randn(64, 32)
        for parameter, optimizer in zip((ours, theirs), optimizers, strict=True):
            parameter.grad = gradient.clone()
            optimizer.step()
    ours_moved, theirs_moved = ours.detach() - start, theirs.detach() - start
    assert (ours_moved - theirs_moved).norm() < 0.02 * theirs_moved.norm()  # theirs orthogonalises in bf16


def test_evaluation_is_deterministic(nb, model, tokenizer, cfg, stories):
    blocks = nb.fixed_blocks(nb.tokenize_stories(tokenizer, stories[:60]), cfg.model.seq_len, 40)
    first = nb.evaluate(model, blocks, tokenizer, "cpu")
    torch.rand(100)  # the global RNG must not matter
    assert nb.evaluate(model, blocks, tokenizer, "cpu") == first
    assert math.isfinite(first["loss"]) and math.isfinite(first["nelbo"])


def test_training_lowers_validation_loss(nb, model, tokenizer, cfg, tiny_data, tmp_path):
    stream, val = tiny_data(cfg.model.seq_len, n_val_blocks=32)
    short = dataclasses.replace(cfg, micro_steps=40, grad_accum=2, warmup_steps=4, evals_per_run=2, log_every=5)
    torch.manual_seed(0)
    history, _ = nb.train_run(model, short, stream, val, tokenizer, tmp_path / "run")
    steps = [step for step, _ in history["val"]]
    assert steps == [0, 20, 40]  # reported in micro-steps: 20 updates of 2 micro-batches
    assert [step for step, _ in history["train"]] == list(range(10, 41, 10))
    losses = [loss for _, loss in history["val"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.5
    assert [step for step, _ in history["nelbo"]] == steps and history["nelbo"][-1][1] < history["nelbo"][0][1]
    assert [step for step, _ in history["ema_val"]] == steps and history["ema_val"][-1][1] < history["ema_val"][0][1]


def test_ema_tracks_an_exponential_average_of_the_weights(nb, model, tokenizer, cfg, tiny_data, tmp_path):
    stream, val = tiny_data(cfg.model.seq_len)
    short = dataclasses.replace(cfg, micro_steps=4, warmup_steps=1, evals_per_run=1, ema_decay=0.7)
    snapshots = [model.ln_f.weight.detach().clone()]  # the average starts from the initial weights
    handle = after_each_update(lambda: snapshots.append(model.ln_f.weight.detach().clone()))
    try:
        _, ema = nb.train_run(model, short, stream, val, tokenizer, tmp_path / "run")
    finally:
        handle.remove()
    expected = snapshots[0]
    for weights in snapshots[1:]:
        expected = 0.7 * expected + 0.3 * weights
    assert len(snapshots) == 5
    assert torch.allclose(ema.ln_f.weight, expected, atol=1e-6)
    assert not torch.allclose(ema.ln_f.weight, model.ln_f.weight)
    assert ema.head.weight is ema.tok_emb.weight


def test_final_weights_are_the_better_of_raw_and_ema(nb):
    raw, ema = object(), object()
    assert nb.pick_final_weights(raw, ema, {"val": [[0, 6.0], [9, 4.0]], "ema_val": [[0, 6.0], [9, 3.9]]}) is ema
    assert nb.pick_final_weights(raw, ema, {"val": [[0, 6.0], [9, 4.0]], "ema_val": [[0, 6.0], [9, 4.0]]}) is raw
