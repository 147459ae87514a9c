import json
from dataclasses import asdict, replace

import pytest
import torch


@pytest.fixture()
def saved(nb, model, tokenizer, cfg, tmp_path):
    history = {
        "train": [[10, 5.0]],
        "val": [[0, 6.0], [60, 5.0]],
        "ema_val": [[0, 6.0], [60, 4.9]],
        "nelbo": [[0, 6.1], [60, 4.5]],
        "ema_nelbo": [[0, 6.1], [60, 4.4]],
    }
    nb.save_checkpoint(tmp_path / "final", model, tokenizer, cfg, history, "synthetic")
    return tmp_path / "final", history


def same_logits(a, b, vocab, cfg):
    x = torch.randint(vocab, (2, cfg.model.seq_len))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_save_then_load_gives_identical_logits(nb, model, tokenizer, cfg, saved):
    folder, history = saved
    reloaded, reloaded_tokenizer, reloaded_cfg, reloaded_history = nb.load_checkpoint(folder)
    assert same_logits(model, reloaded, len(tokenizer), cfg)
    assert reloaded.head.weight is reloaded.tok_emb.weight
    assert reloaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert reloaded_tokenizer.mask_token_id == tokenizer.mask_token_id
    assert reloaded_cfg == cfg and reloaded_history == history
    assert nb.ModelConfig(**json.loads((folder / "config.json").read_text())) == model.config
    assert not list(folder.parent.glob("*.tmp")) and not list(folder.parent.glob("*.old"))


def test_the_hub_mixin_loads_the_same_folder(nb, model, tokenizer, cfg, saved):
    folder, _ = saved
    reloaded = nb.DiffusionLM.from_pretrained(folder, strict=True)
    assert same_logits(model, reloaded, len(tokenizer), cfg)


def test_saving_again_replaces_the_checkpoint_whole(nb, model, tokenizer, cfg, saved):
    folder, _ = saved
    with torch.no_grad():
        model.tok_emb.weight.add_(1.0)
    nb.save_checkpoint(folder, model, tokenizer, cfg, {"train": [], "val": [[0, 1.0]]}, "synthetic")
    reloaded, *_ = nb.load_checkpoint(folder)
    assert same_logits(model, reloaded, len(tokenizer), cfg)


def test_missing_file_is_named(nb, saved):
    folder, _ = saved
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        nb.load_checkpoint(folder)


def test_truncated_weights_are_a_clear_error(nb, saved):
    folder, _ = saved
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors could not be loaded.*corrupt or truncated"):
        nb.load_checkpoint(folder)


def test_weights_of_another_shape_are_a_clear_error(nb, saved, shape, tmp_path):
    folder, _ = saved
    other = nb.DiffusionLM(replace(shape, d_ff=128))
    other.save_pretrained(tmp_path / "other")
    (folder / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="could not be loaded into the model in config.json"):
        nb.load_checkpoint(folder)


def test_tokenizer_from_another_run_is_refused(nb, saved, stories):
    folder, _ = saved
    nb.train_tokenizer(stories, 300).save_pretrained(folder)
    with pytest.raises(ValueError, match="has 300 tokens but the model.*expects 400.*different runs"):
        nb.load_checkpoint(folder)


@pytest.mark.parametrize("name", ["config.json", "training_config.json", "history.json"])
def test_garbled_json_is_named(nb, saved, name):
    folder, _ = saved
    (folder / name).write_text("{not json")
    with pytest.raises(ValueError, match=f"{name} is not valid JSON"):
        nb.load_checkpoint(folder)


def test_a_config_of_another_model_is_a_clear_error(nb, saved):
    folder, _ = saved
    (folder / "config.json").write_text(json.dumps({"hidden_size": 512}))
    with pytest.raises(ValueError, match="cannot use"):
        nb.load_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps({**asdict(nb.get_config("smoke").model), "d_model": 65}))
    with pytest.raises(ValueError, match="d_model=65 must split into n_heads=2"):
        nb.load_checkpoint(folder)


def test_load_pretrained_reads_folders_and_explains_unreachable_repos(nb, saved):
    folder, _ = saved
    model, *_ = nb.load_pretrained(str(folder))
    assert isinstance(model, nb.DiffusionLM)
    with pytest.raises(FileNotFoundError, match="(?s)neither a checkpoint folder nor a Hub repo.*Set CHECKPOINT"):
        nb.load_pretrained("someone/missing-model")


def test_hub_folder_has_card_plot_and_gif_and_still_loads(nb, model, tokenizer, cfg, saved, tmp_path):
    folder, history = saved
    gif = tmp_path / "inference.gif"
    nb.save_gif([nb.render_frames(["a █"], ["step 0"])[0]] * 2, gif)
    nb.prepare_hub_folder(folder, model, cfg, history, gif, "me/tiny-diffusion")
    card = (folder / "README.md").read_text()
    assert "license: cdla-sharing-1.0" in card and "| 60 | 5.0000 | 4.9000 | 4.5000 | 4.4000 |" in card
    assert 'load_pretrained("me/tiny-diffusion")' in card and "T=16" in card
    assert "rotary positions, residual branches gated from zero" in card and "[EOS] included" in card
    assert (folder / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "inference.gif").read_bytes() == gif.read_bytes()
    reloaded, *_ = nb.load_checkpoint(folder)
    assert same_logits(model, reloaded, len(tokenizer), cfg)


def test_a_hub_repo_id_is_downloaded_then_loaded(nb, model, tokenizer, cfg, saved, monkeypatch):
    folder, _ = saved
    asked = []
    monkeypatch.setattr(nb, "snapshot_download", lambda repo_id: asked.append(repo_id) or str(folder))
    reloaded, *_ = nb.load_pretrained("me/tiny-diffusion")
    assert asked == ["me/tiny-diffusion"]
    assert same_logits(model, reloaded, len(tokenizer), cfg)


def test_push_uploads_the_prepared_folder(nb, saved, monkeypatch):
    folder, _ = saved
    calls = []

    class RecordingApi:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, exist_ok):
            calls.append(("create", repo_id, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", folder_path, repo_id))
            return f"https://huggingface.co/{repo_id}"

    monkeypatch.setattr(nb, "HfApi", RecordingApi)
    assert nb.push_to_hub(folder, "me/tiny-diffusion", "hf_secret") == "https://huggingface.co/me/tiny-diffusion"
    assert calls == [
        ("token", "hf_secret"),
        ("create", "me/tiny-diffusion", True),
        ("upload", str(folder), "me/tiny-diffusion"),
    ]


def test_the_averaged_weights_save_and_load_like_the_model(nb, model, tokenizer, cfg, tmp_path):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5))
    ema.update_parameters(model)
    with torch.no_grad():
        model.tok_emb.weight.add_(1.0)
    ema.update_parameters(model)
    history = {"train": [], "val": [[0, 6.0]], "ema_val": [[0, 5.0]], "nelbo": [[0, 6.0]], "ema_nelbo": [[0, 5.0]]}
    chosen = nb.pick_final_weights(model, ema.module, history)
    assert chosen is ema.module
    nb.save_checkpoint(tmp_path / "final", chosen, tokenizer, cfg, history, "synthetic")
    reloaded, *_ = nb.load_checkpoint(tmp_path / "final")
    assert same_logits(ema.module, reloaded, len(tokenizer), cfg)
    assert not same_logits(model, reloaded, len(tokenizer), cfg)


def rounding_differently(graph, example_inputs):
    """A torch.compile backend whose kernels round differently from eager, as fused GPU kernels do."""

    def run(*args):
        return [out + 1e-4 if torch.is_tensor(out) and out.is_floating_point() else out for out in graph(*args)]

    return run


def test_a_compiled_model_passes_the_reload_check(nb, model, tokenizer, cfg, tmp_path, monkeypatch):
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **options: compile_module(self, backend=rounding_differently))
    assert nb.compile_model(model, True, cfg.batch_size) == "compiled"
    nb.save_checkpoint(tmp_path / "final", model, tokenizer, cfg, {"train": [], "val": [[0, 6.0]]}, "synthetic")
    reloaded, *_ = nb.load_checkpoint(tmp_path / "final")
    assert not same_logits(model, reloaded, len(tokenizer), cfg)  # so logits cannot be the test of a good reload
    nb.check_reload(model, tmp_path / "final", "cpu")


def test_a_checkpoint_that_is_not_the_model_fails_the_reload_check(nb, model, tokenizer, cfg, saved):
    folder, _ = saved
    nb.check_reload(model, folder, "cpu")
    with torch.no_grad():
        model.blocks[1].mlp.down.weight[0, 0] += 1e-3
    with pytest.raises(RuntimeError, match=r"does not reload to the model just saved.*blocks\.1\.mlp\.down\.weight"):
        nb.check_reload(model, folder, "cpu")
