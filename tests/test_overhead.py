"""benchmarks/overhead.py: its variants compute the notebook's loss and update, so their timings compare like with
like."""

import pytest
import torch
from notebook_defs import load_benchmark


@pytest.fixture(scope="module")
def overhead():
    return load_benchmark("overhead")


def loss_and_gradient(model, loss_function, batch):
    model.zero_grad()
    loss = loss_function(model, *batch)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])


def test_the_notebooks_loss_at_every_position_is_the_loss_at_the_hidden_ones_it_had_before(
    overhead, nb, model, shape, tokenizer
):
    batch = overhead.micro_batches(nb, shape, 8, 1, tokenizer.mask_token_id, "cpu")[0]
    notebook_loss, notebook_gradient = loss_and_gradient(model, overhead.notebook_loss(nb), batch)
    before, gradient_before = loss_and_gradient(model, overhead.hidden_only_loss, batch)
    assert notebook_loss == pytest.approx(before, rel=1e-5)
    assert torch.allclose(notebook_gradient, gradient_before, atol=1e-6)
    x, t, noisy, hidden = batch
    assert 0 < hidden.sum() < hidden.numel() and torch.equal(
        noisy[hidden].unique(), torch.tensor([tokenizer.mask_token_id])
    )


def test_every_variant_trains_on_the_same_micro_batches(overhead, nb, shape, tokenizer):
    first = overhead.micro_batches(nb, shape, 4, 3, tokenizer.mask_token_id, "cpu")
    again = overhead.micro_batches(nb, shape, 4, 3, tokenizer.mask_token_id, "cpu")
    assert all(
        torch.equal(a, b) for one, other in zip(first, again, strict=True) for a, b in zip(one, other, strict=True)
    )
    assert not torch.equal(first[0][0], first[1][0])
