import json

import pytest
import torch


@pytest.fixture()
def saved(nb, model, tokenizer, cfg, tmp_path):
    history = {"train": [[10, 5.0]], "val": [[0, 6.0], [60, 5.0]]}
    nb.save_checkpoint(tmp_path / "final", model, tokenizer, cfg, history)
    return tmp_path / "final", history


def test_save_then_load_gives_identical_logits(nb, model, tokenizer, cfg, saved):
    folder, history = saved
    reloaded, reloaded_tokenizer, config = nb.load_checkpoint(folder)
    x = torch.randint(len(tokenizer), (2, cfg.seq_len))
    t = torch.tensor([1, cfg.diffusion_steps])
    model.eval()
    assert torch.equal(model(x, t), reloaded(x, t))
    assert reloaded.head.weight is reloaded.tok_emb.weight
    assert reloaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert reloaded_tokenizer.mask_token_id == tokenizer.mask_token_id
    assert config["train"]["mode"] == "smoke" and config["model"] == model.config
    assert json.loads((folder / "history.json").read_text()) == history


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


def test_tokenizer_from_another_run_is_refused(nb, model, cfg, saved, stories):
    folder, _ = saved
    nb.train_tokenizer(stories, 300).save_pretrained(folder)
    with pytest.raises(ValueError, match="has 300 tokens but the model.*expects 400"):
        nb.load_checkpoint(folder)


def test_garbled_config_is_a_clear_error(nb, saved):
    folder, _ = saved
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not a valid model config"):
        nb.load_checkpoint(folder)
