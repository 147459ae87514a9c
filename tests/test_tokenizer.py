import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_utf8_text_round_trips(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.unk_token_id not in ids or "[UNK]" in text
    assert tokenizer.decode(ids) == text


def test_characters_never_seen_in_training_survive(tokenizer):
    text = "QUIZ: ¿Dónde está 東京? 🙂"
    ids = tokenizer.encode(text)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_special_tokens_and_chat_format(nb, tokenizer):
    assert tokenizer.convert_ids_to_tokens(list(range(7))) == nb.SPECIAL_TOKENS
    ids = tokenizer.encode(nb.format_story("Once upon a time"))
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    prompt_ids = tokenizer.encode(nb.format_story("Once upon a time", finished=False))
    assert prompt_ids == ids[:-1]  # a prompt is the training text cut before [EOS]: no trailing [EOS]


def test_tokenize_stories_packs_every_story_in_order(nb, tokenizer, stories):
    stream = nb.tokenize_stories(tokenizer, stories[:50], chunk=7)
    assert stream.dtype == np.uint16
    assert (stream == tokenizer.bos_token_id).sum() == 50 == (stream == tokenizer.eos_token_id).sum()
    expected = [i for s in stories[:50] for i in tokenizer.encode(nb.format_story(s))]
    assert stream.tolist() == expected


def test_blocks(nb):
    stream = np.arange(1000, dtype=np.uint16)
    blocks = nb.random_blocks(stream, 8, 32, torch.Generator().manual_seed(0))
    assert blocks.shape == (8, 32) and blocks.dtype == torch.int64
    assert torch.all(blocks[:, 1:] - blocks[:, :-1] == 1)  # contiguous windows of the stream
    fixed = nb.fixed_blocks(stream, 100, 50)
    assert fixed.shape == (10, 100) and fixed.flatten().tolist() == list(range(1000))
    with pytest.raises(ValueError, match="fewer than seq_len=64"):
        nb.random_blocks(stream[:10], 1, 64)


def test_tokenizer_and_token_stream_are_cached(nb, stories, tmp_path):
    first = nb.cached_tokenizer(stories[:100], 350, tmp_path)
    again = nb.cached_tokenizer(stories[:100], 350, tmp_path)
    assert again.backend_tokenizer.to_str() == first.backend_tokenizer.to_str()
    other = nb.cached_tokenizer(stories[:100], 360, tmp_path)
    assert len(other) == 360 and len(list(tmp_path.glob("tokenizer-*.json"))) == 2

    stream = nb.cached_token_stream(again, stories[:50], tmp_path)
    assert isinstance(stream, np.memmap)
    assert stream.tolist() == nb.tokenize_stories(first, stories[:50]).tolist()
    nb.cached_token_stream(first, stories[:50], tmp_path)  # the reloaded tokenizer hits the same cache entry
    assert len(list(tmp_path.glob("tokens-*.npy"))) == 1 and not list(tmp_path.glob("*.tmp*"))
