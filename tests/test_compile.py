"""The compiled fast path computes what the plain eager model computes."""

import dataclasses

import torch


def test_compiled_blocks_give_the_eager_loss_curve(nb, cfg, shape, tokenizer, tiny_data, tmp_path):
    short = dataclasses.replace(cfg, micro_steps=20, warmup_steps=2, evals_per_run=2, log_every=5)
    stream, val = tiny_data(shape.seq_len)
    histories = []
    for enabled, expected in ((False, "eager"), (True, "compiled")):
        torch.manual_seed(0)
        model = nb.DiffusionLM(shape)
        assert nb.compile_model(model, enabled, short.batch_size) == expected
        compiled_modules = [m._compiled_call_impl is not None for m in (*model.blocks, model.head)]
        assert compiled_modules == [enabled] * (shape.n_layers + 1)  # every block and the output layer
        history, _ = nb.train_run(model, short, stream, val, tokenizer, tmp_path / expected)
        histories.append(history)
        names = set(model.state_dict())
    eager, compiled = histories
    assert "blocks.0.attn.qkv.weight" in names  # checkpoints keep their weight names
    for key in ("train", "val", "nelbo"):
        for (step_a, loss_a), (step_b, loss_b) in zip(eager[key], compiled[key], strict=True):
            assert step_a == step_b and abs(loss_a - loss_b) < 1e-3, (key, step_a, loss_a, loss_b)


def test_a_failing_compiler_falls_back_to_eager(nb, cfg, shape, monkeypatch, capsys):
    model = nb.DiffusionLM(shape)

    def broken_compile(self, *args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch.nn.Module, "compile", broken_compile)
    assert nb.compile_model(model, True, cfg.batch_size) == "eager"
    assert "torch.compile is not usable here (RuntimeError: no C++ compiler)" in capsys.readouterr().out
    assert all(module._compiled_call_impl is None for module in (*model.blocks, model.head))


def test_training_reuses_the_code_compiled_for_the_probe(nb, cfg, shape, tokenizer, tiny_data, monkeypatch):
    graphs = []

    def counting(graph, example_inputs):  # a torch.compile backend that only counts the graphs it is given
        graphs.append(graph)
        return graph.forward

    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **options: compile_module(self, backend=counting))
    torch.compiler.reset()  # no compiled code left over from other tests
    model = nb.DiffusionLM(shape)
    assert nb.compile_model(model, True, cfg.batch_size) == "compiled"
    probed = len(graphs)
    assert probed > 0
    stream, _ = tiny_data(shape.seq_len)
    for _ in range(3):  # a GPU's training step (on the CPU, diffusion_loss scores only the hidden positions)
        x = nb.random_blocks(stream, cfg.batch_size, shape.seq_len)
        noisy, hidden = nb.corrupt(x, torch.randint(1, shape.diffusion_steps + 1, (len(x),)), shape.diffusion_steps,
                                   tokenizer.mask_token_id)
        torch.where(hidden, model(noisy, x), 0.0).sum().backward()
    assert len(graphs) == probed  # no recompilation: training runs the probe's code, at a static batch size
    torch.compiler.reset()


def test_a_sampling_round_that_fails_to_compile_runs_eagerly(nb, model, tokenizer, monkeypatch, capsys):
    def broken_compile(function, **options):
        def fails(*args):
            raise RuntimeError("a compiler bug")
        return fails

    nb.compiled_round.cache_clear()
    monkeypatch.setattr(torch, "compile", broken_compile)
    sampling = nb.Sampling(steps=6, top_k=20, gen_len=16)
    stories = [nb.generate(model, tokenizer, ["Once upon a time"] * 3, dataclasses.replace(sampling, compiled=on),
                           "cpu", torch.Generator().manual_seed(5))[0] for on in (False, True)]
    nb.compiled_round.cache_clear()
    assert torch.equal(*stories)  # the eager rounds, drawn from the same numbers
    assert capsys.readouterr().out.count("A compiled sampling round failed here (RuntimeError)") == 1
