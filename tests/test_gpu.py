"""What only a GPU can check: the compiled bf16 model against the fp32 CPU model; Muon's bf16 orthogonalisation against
the CPU's float32 one; compiled sampling rounds; the sampler's random numbers when the generator and the model sit on
different devices; evaluation on the GPU. Skipped where there is no CUDA GPU (`benchmarks/gpu_checks.sh tests` runs
them on one)."""

import dataclasses
import warnings

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def relative_error(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def flat_gradient(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def noisy_batch(nb, shape, tokenizer, stream, t_value=None):
    torch.manual_seed(1)
    x = nb.random_blocks(stream, 16, shape.seq_len, torch.Generator().manual_seed(0))
    t = torch.full((len(x),), t_value) if t_value else torch.randint(1, shape.diffusion_steps + 1, (len(x),))
    noisy, hidden = nb.corrupt(x, t, shape.diffusion_steps, tokenizer.mask_token_id, torch.Generator().manual_seed(2))
    return x, t, noisy, hidden


def test_the_compiled_bf16_model_on_the_gpu_computes_the_cpu_loss_and_gradient(nb, model, shape, tokenizer, tiny_data):
    stream, _ = tiny_data(shape.seq_len)
    x, t, noisy, hidden = noisy_batch(nb, shape, tokenizer, stream)
    on_cpu = model.float()
    loss_cpu = on_cpu(noisy, x)[hidden].mean()
    loss_cpu.backward()
    gradient_cpu = flat_gradient(on_cpu)

    torch.compiler.reset()
    on_gpu = nb.DiffusionLM(shape).cuda()
    on_gpu.load_state_dict(on_cpu.state_dict())
    assert nb.compile_model(on_gpu, True, len(x)) == "compiled"
    with nb.autocast("cuda"):
        loss_gpu = on_gpu(noisy.cuda(), x.cuda())[hidden.cuda()].mean()
    loss_gpu.backward()
    gradient_gpu = flat_gradient(on_gpu).cpu()

    assert abs(loss_gpu.item() - loss_cpu.item()) / loss_cpu.item() < 1e-2
    assert relative_error(gradient_gpu, gradient_cpu) < 5e-2  # bf16 operands: about 1e-2
    assert torch.nn.functional.cosine_similarity(gradient_gpu, gradient_cpu, dim=0) > 0.99


def test_muons_bf16_orthogonalisation_on_the_gpu_matches_the_cpus_float32_one(nb):
    torch.manual_seed(0)
    for matrix in (torch.randn(384, 128), torch.randn(128, 512)):
        on_gpu = nb.orthogonalize(matrix.cuda())
        assert on_gpu.dtype == torch.float32 and relative_error(on_gpu.cpu(), nb.orthogonalize(matrix)) < 0.03


def test_training_on_the_gpu_lowers_the_validation_loss_and_saves_its_weights(
    nb, cfg, shape, tokenizer, tiny_data, tmp_path
):
    short = dataclasses.replace(cfg, micro_steps=60, evals_per_run=2)
    stream, val = tiny_data(shape.seq_len)
    torch.compiler.reset()
    torch.manual_seed(0)
    model = nb.DiffusionLM(shape).cuda()
    assert nb.compile_model(model, True, short.batch_size) == "compiled"
    history, _ = nb.train_run(model, short, stream, val, tokenizer, tmp_path)
    first, last = history["val"][0][1], history["val"][-1][1]
    assert last < first - 0.5, history["val"]
    saved, *_ = nb.load_checkpoint(nb.completed_checkpoints(tmp_path)[-1])
    assert all(torch.equal(saved.state_dict()[name], value.cpu()) for name, value in model.state_dict().items())


def test_the_training_loop_never_waits_for_the_gpu_between_validations(nb, cfg, shape, tokenizer, tiny_data, tmp_path):
    """A synchronizing operation in an update (a copy from pageable memory, a tensor read on the host) would make
    the host wait for the GPU every update: twice the updates must not bring more of them."""
    stream, val = tiny_data(shape.seq_len)

    def synchronizations(updates):
        short = dataclasses.replace(
            cfg,
            micro_steps=updates * cfg.grad_accum,
            warmup_steps=1,
            evals_per_run=1,
            checkpoints_per_run=1,
            log_every=10**6,
        )
        model = nb.DiffusionLM(shape).cuda()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                nb.train_run(model, short, stream, val, tokenizer, tmp_path / str(updates))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(warning.message) for warning in caught)

    assert synchronizations(8) == synchronizations(4) > 0  # > 0: the validations do synchronize, and are seen


def test_evaluation_on_the_gpu_matches_the_cpu(nb, model, shape, tokenizer, tiny_data):
    _, val = tiny_data(shape.seq_len)
    on_cpu = nb.evaluate(model.float(), val, tokenizer, "cpu")
    on_gpu = nb.evaluate(model.cuda(), val, tokenizer, "cuda")
    assert on_gpu["tokens"] == on_cpu["tokens"]
    assert abs(on_gpu["nelbo"] - on_cpu["nelbo"]) / on_cpu["nelbo"] < 1e-2
    assert abs(on_gpu["loss"] - on_cpu["loss"]) / on_cpu["loss"] < 1e-2


@pytest.mark.parametrize("generator_device", ["cpu", "cuda"])
def test_draws_on_the_gpu_follow_the_probabilities_with_a_generator_on_either_device(nb, generator_device):
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0]], device="cuda").expand(20_000, 4)

    def uniform():
        return nb.random_uniform(probs.shape, torch.Generator(generator_device).manual_seed(0), "cuda")

    draws, again = nb.draw(probs, uniform()), nb.draw(probs, uniform())
    assert draws.device.type == "cuda" and torch.equal(draws, again)
    shares = torch.bincount(draws, minlength=4).cpu() / len(draws)
    assert torch.allclose(shares, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.015)


@pytest.mark.parametrize("generator_device", ["cpu", "cuda"])
@pytest.mark.parametrize("sampler", ["confidence", "ancestral"])
def test_sampling_on_the_gpu_is_reproducible_with_a_generator_on_either_device(
    nb, model, tokenizer, generator_device, sampler
):
    model = model.cuda()

    def sample(seed):
        generator = torch.Generator(generator_device).manual_seed(seed)
        sampling = nb.Sampling(8, 1.0, 20, sampler=sampler, gen_len=24)
        tokens, _ = nb.generate(model, tokenizer, ["Once upon a time"] * 4, sampling, "cuda", generator)
        return tokens

    first = sample(0)
    assert not (first == tokenizer.mask_token_id).any()
    assert torch.equal(first, sample(0))
    assert not torch.equal(first, sample(1))


@pytest.mark.parametrize("sampler", ["confidence", "ancestral"])
def test_compiled_rounds_on_the_gpu_replay_what_they_recorded(nb, model, tokenizer, sampler):
    """Each round is one CUDA graph: its replays must write what the recording and the eager rounds wrote."""
    model = model.cuda()
    torch.compiler.reset()

    def sample(compiled):
        sampling = nb.Sampling(8, 1.0, 20, sampler=sampler, gen_len=24, compiled=compiled)
        tokens, _ = nb.generate(model, tokenizer, ["Once upon a time"] * 4, sampling, "cuda",
                                torch.Generator("cuda").manual_seed(0))
        return tokens

    eager, recorded, replayed = sample(False), sample(True), sample(True)
    assert torch.equal(replayed, recorded) and not (replayed == tokenizer.mask_token_id).any()
    assert (recorded == eager).float().mean() > 0.8  # bf16 kernels of another shape may break near-ties otherwise
