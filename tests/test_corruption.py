import torch


def test_mask_ratio_follows_t_over_T(nb, tokenizer):
    T = 16
    x = torch.randint(10, len(tokenizer), (T, 20_000))
    t = torch.arange(1, T + 1)
    noisy, hidden = nb.corrupt(x, t, T, tokenizer.mask_token_id, torch.Generator().manual_seed(0))
    assert torch.allclose(hidden.float().mean(1), t / T, atol=0.01)
    assert torch.equal(noisy == tokenizer.mask_token_id, hidden)
    assert torch.equal(noisy[~hidden], x[~hidden])


def test_every_token_can_be_hidden_eos_and_the_chat_prefix_included(nb, tokenizer, stories):
    """[EOS] is a training target like any other token: the model can only learn where stories end if asked."""
    x = torch.tensor(nb.tokenize_stories(tokenizer, stories[:40]).astype("int64")[:2000]).view(4, 500)
    T = 8
    noisy, hidden = nb.corrupt(x, torch.full((4,), T), T, tokenizer.mask_token_id)  # t = T: everything hidden
    assert hidden.all()
    for special in (tokenizer.eos_token_id, tokenizer.bos_token_id):
        assert (x == special).any()
    _, half = nb.corrupt(x, torch.full((4,), T // 2), T, tokenizer.mask_token_id, torch.Generator().manual_seed(0))
    eos = x == tokenizer.eos_token_id
    assert 0.3 < half[eos].float().mean() < 0.7  # hidden as often as any token


def test_on_the_cpu_only_hidden_positions_reach_the_output_layer_and_the_loss_is_the_same(nb, model, tokenizer, cfg):
    """The GPU's way (every position scored, the visible ones dropped after) and the CPU's give one loss."""
    model.eval()
    mask_id, T = tokenizer.mask_token_id, cfg.model.diffusion_steps
    x = torch.randint(10, len(tokenizer), (4, cfg.model.seq_len))
    scored = []
    hook = model.head.register_forward_hook(lambda module, args, output: scored.append(tuple(args[0].shape[:-1])))
    torch.manual_seed(2)
    loss = nb.diffusion_loss(model, x, mask_id, T)
    hook.remove()
    torch.manual_seed(2)
    noisy, hidden = nb.corrupt(x, torch.randint(1, T + 1, (4,)), T, mask_id)
    every_position = torch.where(hidden, model(noisy, x), 0.0).sum() / hidden.sum()
    assert scored == [(int(hidden.sum()),)] and 0 < hidden.sum() < hidden.numel()
    assert torch.allclose(loss, every_position, atol=1e-6)


def test_the_diffusion_loss_is_the_mean_over_hidden_tokens_at_random_steps(nb, model, tokenizer, shape):
    x = torch.randint(10, len(tokenizer), (6, shape.seq_len))
    torch.manual_seed(5)
    loss = nb.diffusion_loss(model, x, tokenizer.mask_token_id, shape.diffusion_steps)
    torch.manual_seed(5)
    t = torch.randint(1, shape.diffusion_steps + 1, (6,))
    noisy, hidden = nb.corrupt(x, t, shape.diffusion_steps, tokenizer.mask_token_id)
    expected = torch.nn.functional.cross_entropy(model(noisy)[hidden], x[hidden])
    assert len(set(t.tolist())) > 1 and torch.allclose(loss, expected, atol=1e-6)
