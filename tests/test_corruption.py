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
    loss = nb.masked_cross_entropy(model, noisy, t, x, hidden)
    assert torch.equal(loss, nb.masked_cross_entropy(model, noisy, t, other_targets, hidden))
    logits = model(noisy, t)
    expected = torch.nn.functional.cross_entropy(logits[hidden], x[hidden])
    assert torch.allclose(loss, expected, atol=1e-6)


def test_nothing_masked_gives_zero_loss_not_nan(nb, model, tokenizer, cfg):
    x = torch.randint(10, len(tokenizer), (2, cfg.seq_len))
    loss = nb.masked_cross_entropy(model, x, torch.ones(2, dtype=torch.long), x, torch.zeros_like(x, dtype=torch.bool))
    assert loss.item() == 0.0
