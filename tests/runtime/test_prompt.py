"""Prompt syntax, tokenization into 77-token chunks, weighting maths, clip skip, embeddings."""
from __future__ import annotations

import pytest
import torch

from hearth.runtime import loader
from hearth.runtime.tokenizer import END_TOKEN, START_TOKEN, Tokenizer, parse_prompt


@pytest.mark.parametrize("text,expected", [
    ("a cat", [("a cat", 1.0)]),
    ("a (cat)", [("a ", 1.0), ("cat", 1.1)]),
    ("((cat))", [("cat", pytest.approx(1.21))]),
    ("(cat:1.5) dog", [("cat", 1.5), (" dog", 1.0)]),
    ("(a (b:0.5) c:1.2)", [("a ", 1.2), ("b", 0.5), (" c", 1.2)]),
    ("\\(literal\\) x", [("(literal) x", 1.0)]),
    ("(time: 12:30)", [("time: 12", 30.0)]),  # ComfyUI: the last colon wins
    ("(a:b)", [("a:b", pytest.approx(1.1))]),
    ("(x:-0.5)", [("x", -0.5)]),
    ("unclosed (paren", [("unclosed ", 1.0), ("(paren", 1.0)]),
    ("", []),
])
def test_prompt_weight_parser(text, expected):
    assert parse_prompt(text) == expected


def test_chunks_of_77_with_start_end_and_padding():
    tok = Tokenizer(pad_token=END_TOKEN)
    chunks = tok.tokenize_with_weights("hello")
    assert len(chunks) == 1 and len(chunks[0]) == 77
    assert chunks[0][0] == (START_TOKEN, 1.0)
    assert chunks[0][2] == (END_TOKEN, 1.0) and chunks[0][-1] == (END_TOKEN, 1.0)
    zero_pad = Tokenizer(pad_token=0).tokenize_with_weights("hello")
    assert zero_pad[0][2] == (END_TOKEN, 1.0) and zero_pad[0][3] == (0, 1.0)
    long = tok.tokenize_with_weights("cat " * 100)
    assert len(long) == 2 and all(len(c) == 77 for c in long)
    assert sum(1 for c in long for t, _ in c if t not in (START_TOKEN, END_TOKEN)) == 100


def test_short_groups_move_whole_to_the_next_chunk():
    tok = Tokenizer()
    word = "qwzxvbk"  # a few BPE tokens; in parentheses it is a group of its own
    n = len(tok._encode_text(word))
    assert 1 < n < 8
    chunks = tok.tokenize_with_weights("a " * 74 + f"({word}:1.1)", return_word_ids=True)
    assert len(chunks) == 2
    assert all(w != 2 for _, _, w in chunks[0]) and sum(1 for _, _, w in chunks[1] if w == 2) == n
    # a long group (8+ tokens) is split across the boundary instead
    long = tok.tokenize_with_weights("a " * 74 + "(" + "b " * 10 + ":1.1)", return_word_ids=True)
    assert any(w == 2 for _, _, w in long[0]) and any(w == 2 for _, _, w in long[1])


def test_weights_follow_tokens():
    chunks = Tokenizer().tokenize_with_weights("a (red:1.5) cat")
    weights = [w for t, w in chunks[0] if t not in (START_TOKEN, END_TOKEN)]
    assert weights == [1.0, 1.5, 1.0]


@pytest.fixture(scope="module")
def sd15(model_base, manager):
    return loader.load_checkpoint(model_base / "models" / "checkpoints" / "sd15.safetensors", manager,
                                  [model_base / "models" / "embeddings"])


def test_weighting_maths_against_the_empty_prompt(sd15):
    _, clip, _ = sd15
    plain = clip.encode_conditioning("a red cat")[0][0]
    weighted = clip.encode_conditioning("a (red:1.5) cat")[0][0]
    enc = clip.encoders[0]
    empty = [(START_TOKEN, 1.0), (END_TOKEN, 1.0)] + [(END_TOKEN, 1.0)] * 75
    z_empty, _ = enc.encode_token_weights([empty], None, torch.device("cpu"), torch.float32)
    expected = plain.clone()
    expected[0, 2] = (plain[0, 2] - z_empty[0, 2]) * 1.5 + z_empty[0, 2]
    assert torch.allclose(weighted, expected, atol=1e-5)
    assert torch.equal(weighted[0, 1], plain[0, 1])


def test_long_prompts_concatenate_chunks(sd15):
    _, clip, _ = sd15
    cond = clip.encode_conditioning("cat " * 100)[0][0]
    assert cond.shape == (1, 154, 32)


def test_clip_skip_changes_the_output_and_minus_one_is_last(sd15):
    _, clip, _ = sd15
    base = clip.encode_conditioning("a cat")[0][0]
    last = clip.clone()
    last.clip_layer(-1)
    assert torch.allclose(last.encode_conditioning("a cat")[0][0], base, atol=1e-6)
    skip = clip.clone()
    skip.clip_layer(-2)
    assert not torch.allclose(skip.encode_conditioning("a cat")[0][0], base)
    assert clip.layer_idx is None  # clones do not touch the original


def test_embeddings_are_inserted(sd15, model_base):
    _, clip, _ = sd15
    a = clip.encode_conditioning("a embedding:tinyemb cat")[0][0]
    b = clip.encode_conditioning("a cat")[0][0]
    assert a.shape == b.shape and not torch.allclose(a, b)
    chunks = clip.encoders[0].tokenizer.tokenize_with_weights("a embedding:tinyemb cat")
    vectors = [t for t, _ in chunks[0] if torch.is_tensor(t)]
    emb = torch.load(str(model_base / "models" / "embeddings" / "tinyemb.pt"), weights_only=True)
    assert len(vectors) == 2 and torch.equal(vectors[0], emb["string_to_param"]["*"][0])
    safe = clip.encoders[0].tokenizer.tokenize_with_weights("embedding:safeemb, x")
    assert sum(torch.is_tensor(t) for t, _ in safe[0]) == 3
    missing = clip.encode_conditioning("embedding:nothere cat")[0][0]
    assert torch.isfinite(missing).all()


def test_sdxl_concatenates_l_and_g_and_pools_g(model_base, manager):
    _, clip, _ = loader.load_checkpoint(model_base / "models" / "checkpoints" / "sdxl.safetensors", manager)
    cond = clip.encode_conditioning("a cat")
    assert cond[0][0].shape == (1, 77, 64)
    assert cond[0][1]["pooled_output"].shape == (1, 32)
    tokens = clip.tokenize("x")
    assert tokens["g"][0][3] == (0, 1.0) and tokens["l"][0][3] == (END_TOKEN, 1.0)
