from dataclasses import replace

import torch


def test_mask_ratio_follows_t_over_T(nb, tokenizer):
    protected, mask_id = nb.special_ids(tokenizer)
    T = 16
    x = torch.randint(10, len(tokenizer), (T, 20_000))
    t = torch.arange(1, T + 1)
    noisy, hidden = nb.corrupt(x, t, T, mask_id, protected, torch.Generator().manual_seed(0))
    ratios = hidden.float().mean(1)
    assert torch.allclose(ratios, t / T, atol=0.01)
    assert torch.equal(noisy == mask_id, hidden)
    assert torch.equal(noisy[~hidden], x[~hidden])


def test_bos_eos_pad_are_never_masked(nb, tokenizer):
    protected, mask_id = nb.special_ids(tokenizer)
    x = torch.randint(10, len(tokenizer), (4, 500))
    x[:, ::5] = tokenizer.bos_token_id
    x[:, 1::5] = tokenizer.eos_token_id
    x[:, 2::5] = tokenizer.pad_token_id
    noisy, hidden = nb.corrupt(x, torch.full((4,), 8), 8, mask_id, protected)  # t = T: everything else hidden
    assert torch.equal(hidden, ~torch.isin(x, protected))
    assert torch.equal(noisy[:, :3], x[:, :3])


def test_loss_ignores_unmasked_positions(nb, model, tokenizer, cfg):
    protected, mask_id = nb.special_ids(tokenizer)
    model.eval()
    x = torch.randint(10, len(tokenizer), (4, cfg.seq_len))
    t = torch.full((4,), cfg.diffusion_steps // 2)
    noisy, hidden = nb.corrupt(x, t, cfg.diffusion_steps, mask_id, protected, torch.Generator().manual_seed(1))
    other_targets = torch.where(hidden, x, (x + 1) % len(tokenizer))  # change every visible target
    loss = nb.masked_token_losses(model, noisy, t, x, hidden).mean()
    assert torch.equal(loss, nb.masked_token_losses(model, noisy, t, other_targets, hidden).mean())
    logits = model(noisy, t)
    expected = torch.nn.functional.cross_entropy(logits[hidden], x[hidden])
    assert torch.allclose(loss, expected, atol=1e-6)


def test_nothing_masked_gives_zero_loss_not_nan(nb, model, tokenizer, cfg):
    protected, mask_id = nb.special_ids(tokenizer)
    x = torch.full((2, cfg.seq_len), tokenizer.bos_token_id)  # only protected tokens: nothing can be hidden
    for weighting in ("masked_mean", "elbo"):
        loss = nb.training_loss(model, x, replace(cfg, loss_weighting=weighting), mask_id, protected)
        assert loss.item() == 0.0


def test_stratified_steps_cover_every_slice_and_stay_uniform(nb, cfg):
    stratified = replace(cfg, t_sampling="stratified", diffusion_steps=64)
    torch.manual_seed(0)
    draws = torch.stack([nb.draw_steps(8, stratified, "cpu") for _ in range(4000)])
    assert draws.min() >= 1 and draws.max() <= 64
    slices = (draws - 1) // 8  # eight blocks, eight slices of 1..64: one block in each
    assert torch.equal(slices, torch.arange(8).expand_as(slices))
    counts = torch.bincount(draws.flatten() - 1, minlength=64).float()
    assert counts.std() / counts.mean() < 0.1  # each step about equally often
    many = nb.draw_steps(100, replace(stratified, diffusion_steps=16), "cpu")  # more blocks than steps
    assert many.min() >= 1 and many.max() <= 16


def test_elbo_weighting_is_the_nelbo_estimate(nb, model, tokenizer, cfg):
    protected, mask_id = nb.special_ids(tokenizer)
    x = torch.randint(10, len(tokenizer), (4, cfg.seq_len))
    x[:, 0] = tokenizer.bos_token_id
    elbo = replace(cfg, loss_weighting="elbo")
    torch.manual_seed(5)
    loss = nb.training_loss(model, x, elbo, mask_id, protected)
    torch.manual_seed(5)
    t = nb.draw_steps(4, elbo, "cpu")
    noisy, hidden = nb.corrupt(x, t, cfg.diffusion_steps, mask_id, protected)
    ce = torch.nn.functional.cross_entropy(model(noisy, t)[hidden], x[hidden], reduction="none")
    block = hidden.nonzero()[:, 0]
    expected = (ce * cfg.diffusion_steps / t[block]).sum() / (4 * (cfg.seq_len - 1))
    assert torch.allclose(loss, expected, atol=1e-5)
    one_step = replace(cfg, diffusion_steps=1)  # T = 1: everything hidden, weight 1, both losses agree
    torch.manual_seed(5)
    plain = nb.training_loss(model, x, one_step, mask_id, protected)
    torch.manual_seed(5)
    assert torch.allclose(
        plain, nb.training_loss(model, x, replace(one_step, loss_weighting="elbo"), mask_id, protected)
    )
