"""CLIP tokenization and ComfyUI's prompt syntax.

Prompt syntax (as ComfyUI parses it):

* ``(text)`` multiplies the weight of ``text`` by 1.1; nesting multiplies again.
* ``(text:1.3)`` sets the weight to 1.3 (the last ``:`` inside the parentheses; a non-number leaves the
  1.1 rule in force).
* ``\\(`` and ``\\)`` are literal parentheses.
* ``embedding:name`` inserts a textual-inversion embedding from the embeddings folder.

Tokens are packed into 77-token chunks (start token, up to 75 tokens, end token, padding); a word of
8 or more tokens may be split across chunks, shorter ones move to the next chunk whole.
"""
from __future__ import annotations

import functools
import gzip
import logging
import re
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

BPE_PATH = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"
START_TOKEN = 49406
END_TOKEN = 49407
EMBEDDING_PREFIX = "embedding:"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@functools.lru_cache(maxsize=1)
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    lines = gzip.open(BPE_PATH).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


@functools.lru_cache(maxsize=1)
def clip_tokenizer():
    """A Hugging Face CLIPTokenizer built from the bundled merge list (nothing is downloaded)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocab_and_merges()
    try:  # transformers 5: vocabulary and merges in memory
        return CLIPTokenizer(vocab=dict(vocab), merges=list(merges))
    except (TypeError, ValueError):  # transformers 4: files only
        import json
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="hearth-clip-bpe-"))
        (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                           encoding="utf-8")
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


# --- prompt weights -----------------------------------------------------------------------------

def parse_parentheses(text: str) -> list[str]:
    result, current, depth = [], "", 0
    for ch in text:
        if ch == "(":
            if depth == 0:
                if current:
                    result.append(current)
                current = "("
            else:
                current += ch
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                result.append(current + ")")
                current = ""
            else:
                current += ch
        else:
            current += ch
    if current:
        result.append(current)
    return result


def token_weights(text: str, current_weight: float = 1.0) -> list[tuple[str, float]]:
    """Split a prompt into (segment, weight) pairs following the parenthesis rules."""
    out = []
    for part in parse_parentheses(text):
        weight = current_weight
        if len(part) >= 2 and part[-1] == ")" and part[0] == "(":
            part = part[1:-1]
            colon = part.rfind(":")
            weight *= 1.1
            if colon > 0:
                try:
                    weight = float(part[colon + 1:])
                    part = part[:colon]
                except ValueError:
                    pass
            out += token_weights(part, weight)
        else:
            out.append((part, current_weight))
    return out


def escape_important(text: str) -> str:
    return text.replace("\\)", "\0\1").replace("\\(", "\0\2")


def unescape_important(text: str) -> str:
    return text.replace("\0\1", ")").replace("\0\2", "(")


def parse_prompt(text: str) -> list[tuple[str, float]]:
    """Weighted segments with escapes resolved."""
    return [(unescape_important(seg), w) for seg, w in token_weights(escape_important(text), 1.0)]


# --- chunking ----------------------------------------------------------------------------------

class Tokenizer:
    """Turns prompt text into 77-token chunks of (token or embedding vector, weight) for one text encoder.

    ``pad_token`` is the end token for CLIP-L and 0 for OpenCLIP encoders. ``load_embedding(name)``
    returns a tensor [n, dim] or None.
    """

    def __init__(self, pad_token: int = END_TOKEN, max_length: int = 77, embedding_size: int | None = None,
                 load_embedding: Callable[[str], Any] | None = None) -> None:
        self.pad_token = pad_token
        self.max_length = max_length
        self.embedding_size = embedding_size
        self.load_embedding = load_embedding
        self.max_word_length = 8

    def _encode_text(self, text: str) -> list[int]:
        ids = clip_tokenizer()(text)["input_ids"]
        return list(ids[1:-1])  # drop start/end

    def _try_embedding(self, name: str):
        parts = name.split()
        first, leftover = parts[0], " ".join(parts[1:])
        embed = self.load_embedding(first) if self.load_embedding else None
        if embed is None:
            stripped = first.strip(",")
            if len(stripped) < len(first):
                embed = self.load_embedding(stripped) if self.load_embedding else None
                return embed, f"{first[len(stripped):]} {leftover}"
        return embed, leftover

    def tokenize_with_weights(self, text: str, return_word_ids: bool = False) -> list[list[tuple]]:
        groups: list[list[tuple[Any, float]]] = []
        for segment, weight in parse_prompt(text):
            split = re.split(" {0}|\n{0}".format(EMBEDDING_PREFIX), segment)
            words = [split[0]] + [EMBEDDING_PREFIX + s for s in split[1:]]
            for word in (w for w in words if w != ""):
                if word.startswith(EMBEDDING_PREFIX) and self.load_embedding is not None:
                    name = word[len(EMBEDDING_PREFIX):].strip("\n")
                    embed, leftover = self._try_embedding(name)
                    if embed is None:
                        log.warning("embedding:%s does not exist, ignoring", name)
                    elif embed.ndim == 1:
                        groups.append([(embed, weight)])
                    else:
                        groups.append([(embed[i], weight) for i in range(embed.shape[0])])
                    if leftover != "":
                        word = leftover
                    else:
                        continue
                groups.append([(t, weight) for t in self._encode_text(word)])

        chunks: list[list[tuple]] = []
        batch: list[tuple] = [(START_TOKEN, 1.0, 0)]
        chunks.append(batch)
        for i, group in enumerate(groups):
            is_large = len(group) >= self.max_word_length
            while group:
                if len(group) + len(batch) > self.max_length - 1:
                    remaining = self.max_length - len(batch) - 1
                    if is_large:
                        batch.extend((t, w, i + 1) for t, w in group[:remaining])
                        batch.append((END_TOKEN, 1.0, 0))
                        group = group[remaining:]
                    else:
                        batch.append((END_TOKEN, 1.0, 0))
                        batch.extend([(self.pad_token, 1.0, 0)] * remaining)
                    batch = [(START_TOKEN, 1.0, 0)]
                    chunks.append(batch)
                else:
                    batch.extend((t, w, i + 1) for t, w in group)
                    group = []
        batch.append((END_TOKEN, 1.0, 0))
        if len(batch) < self.max_length:
            batch.extend([(self.pad_token, 1.0, 0)] * (self.max_length - len(batch)))
        if not return_word_ids:
            chunks = [[(t, w) for t, w, _ in c] for c in chunks]
        return chunks
