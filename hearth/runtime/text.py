"""The CLIP value: text encoders + tokenizers + clip skip + LoRA patches, with ComfyUI's encoding maths.

Weighting: when any token of a prompt has a weight other than 1, an "empty" prompt (start, end, padding)
is encoded alongside, and each weighted token's output vector ``z`` becomes
``(z - z_empty) * weight + z_empty`` (position by position). Chunks of 77 tokens are encoded
separately and concatenated along the token axis; the pooled output is the first chunk's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch

from hearth.runtime.clip_model import ClipTextModel
from hearth.runtime.families import EncoderSpec
from hearth.runtime.patcher import Patcher
from hearth.runtime.tokenizer import END_TOKEN, START_TOKEN, Tokenizer

log = logging.getLogger(__name__)


@dataclass
class TextEncoder:
    spec: EncoderSpec
    patcher: Patcher          # wraps a ClipTextModel
    tokenizer: Tokenizer

    @property
    def model(self) -> ClipTextModel:
        return self.patcher.holder.module

    def clone(self) -> "TextEncoder":
        return TextEncoder(self.spec, self.patcher.clone(), self.tokenizer)

    def _options(self, layer_idx: int | None) -> tuple[int | None, bool]:
        """(layer index or None for the last layer, apply final norm to it) after clip skip."""
        layer = self.spec.layer_idx
        if layer_idx is not None:
            layer = None if abs(layer_idx) > self.model.num_layers else layer_idx
        return layer, self.spec.final_norm_on_hidden

    def _embed(self, chunks: list[list[tuple]], device, dtype):
        model = self.model
        rows, eos = [], []
        for chunk in chunks:
            ints = [t for t, _ in chunk if not torch.is_tensor(t)]
            emb = model.embed_tokens(torch.tensor([ints], device=device, dtype=torch.long))[0].to(torch.float32)
            vectors, it, dropped, eos_at = [], 0, 0, None
            for t, _ in chunk:
                if torch.is_tensor(t):
                    if t.shape[-1] != emb.shape[-1]:
                        log.warning("embedding of width %d does not fit a %d-wide text encoder; ignored",
                                    t.shape[-1], emb.shape[-1])
                        dropped += 1
                        continue
                    vectors.append(t.to(device=device, dtype=torch.float32))
                else:
                    if eos_at is None and int(t) == END_TOKEN:
                        eos_at = len(vectors)
                    vectors.append(emb[it])
                    it += 1
            if dropped:
                pad = model.embed_tokens(torch.tensor([[self.spec.pad_token] * dropped], device=device))[0]
                vectors.extend(pad.to(torch.float32))
            rows.append(torch.stack(vectors))
            eos.append(eos_at if eos_at is not None else len(vectors) - 1)
        return torch.stack(rows).to(dtype), eos

    def encode_token_weights(self, chunks: list[list[tuple]], layer_idx: int | None, device, dtype):
        has_weights = any(w != 1.0 for chunk in chunks for _, w in chunk)
        to_encode = list(chunks)
        if has_weights or not chunks:
            longest = max((len(c) for c in chunks), default=77)
            empty = [(START_TOKEN, 1.0), (END_TOKEN, 1.0)] + [(self.spec.pad_token, 1.0)] * (longest - 2)
            to_encode.append(empty)
        self.patcher.activate()
        embeds, eos = self._embed(to_encode, device, dtype)
        layer, norm = self._options(layer_idx)
        with torch.inference_mode():
            last, hidden, pooled, projected = self.model(embeds, eos, layer, norm)
        z_all = (last if layer is None else hidden).float()
        pooled_out = projected if (self.spec.projected_pooled and projected is not None) else pooled
        pooled_out = pooled_out.float()[0:1].cpu()
        out = []
        for k, chunk in enumerate(chunks):
            z = z_all[k:k + 1].clone()
            if has_weights:
                z_empty = z_all[-1]
                for j, (_, w) in enumerate(chunk):
                    if w != 1.0:
                        z[0][j] = (z[0][j] - z_empty[j]) * w + z_empty[j]
            out.append(z)
        if not out:
            return z_all[-1:].cpu(), pooled_out
        return torch.cat(out, dim=-2).cpu(), pooled_out


class CLIP:
    """A set of text encoders used together (one for SD1/SD2, CLIP-L + CLIP-G for SDXL)."""

    def __init__(self, encoders: list[TextEncoder], manager, combine: str = "single") -> None:
        self.encoders = encoders
        self.manager = manager
        self.combine = combine  # single | sdxl
        self.layer_idx: int | None = None
        # SetClipHooks: HOOKS put on every cond this CLIP encodes, and the hook patches to encode with:
        # [(percent range, or None when unscheduled, {encoder name: [(adapters, strength)]})]
        self.apply_hooks_to_conds = None
        self.hook_schedule: list | None = None

    def clone(self) -> "CLIP":
        other = CLIP([e.clone() for e in self.encoders], self.manager, self.combine)
        other.layer_idx = self.layer_idx
        other.apply_hooks_to_conds = self.apply_hooks_to_conds
        other.hook_schedule = self.hook_schedule
        return other

    def clip_layer(self, layer_idx: int) -> None:
        self.layer_idx = layer_idx

    def encoder(self, name: str) -> TextEncoder | None:
        for e in self.encoders:
            if e.spec.name == name:
                return e
        return None

    @property
    def short_names(self) -> list[str]:
        return [e.spec.name.split("_")[-1] for e in self.encoders]

    def tokenize(self, text: str) -> dict[str, list]:
        return {e.spec.name.split("_")[-1]: e.tokenizer.tokenize_with_weights(text) for e in self.encoders}

    def encode_from_tokens(self, tokens: dict[str, list], return_pooled: bool = False, return_dict: bool = False):
        """ComfyUI's signature (custom nodes call it): cond [1, T, D]; with return_pooled (cond, pooled [1, P]);
        with return_dict {"cond", "pooled_output"}."""
        cond, pooled = self._encode_tokens(tokens)
        if return_dict:
            return self._add_hooks({"cond": cond, "pooled_output": pooled})
        return (cond, pooled) if return_pooled else cond

    def encode_from_tokens_scheduled(self, tokens: dict[str, list], unprojected: bool = False,
                                     add_dict: dict[str, Any] | None = None, show_pbar: bool = True) -> list:
        """CONDITIONING for ``tokens`` (ComfyUI's signature). With scheduled CLIP hooks, one entry per range
        of constant hook strengths, limited to it by ``clip_start_percent``/``clip_end_percent``."""
        add_dict = add_dict or {}
        schedule = self.hook_schedule
        if not schedule or schedule[0][0] is None:
            cond, pooled = self._encode_tokens(tokens)
            options = self._add_hooks({"pooled_output": pooled})
            options.update(add_dict)
            return [[cond, options]]
        out = []
        for (start, end), extra in schedule:
            if "start_percent" in add_dict and end < add_dict["start_percent"]:
                continue
            if "end_percent" in add_dict and start > add_dict["end_percent"]:
                continue
            cond, pooled = self._encode_tokens(tokens, extra)
            options = {"pooled_output": pooled, "clip_start_percent": start, "clip_end_percent": end}
            options.update(add_dict)
            out.append([cond, self._add_hooks(options)])
        return out

    def _add_hooks(self, options: dict) -> dict:
        if self.apply_hooks_to_conds:
            options["hooks"] = self.apply_hooks_to_conds
        return options

    def _encode_tokens(self, tokens: dict[str, list], extra: dict | None = None):
        if extra is None and self.hook_schedule:
            extra = self.hook_schedule[0][1]
        results = {}
        for e in self.encoders:
            if extra and extra.get(e.spec.name):
                patcher = e.patcher.clone()
                for adapters, strength in extra[e.spec.name]:
                    patcher.add_patches(adapters, strength)
                e = TextEncoder(e.spec, patcher, e.tokenizer)
            device = self.manager.load(e.patcher.holder)
            dtype = e.patcher.holder.dtype
            results[e.spec.name] = e.encode_token_weights(tokens[e.spec.name.split("_")[-1]], self.layer_idx,
                                                          device, dtype)
        if self.combine == "sdxl":
            l_out, _ = results["clip_l"]
            g_out, g_pooled = results["clip_g"]
            cut = min(l_out.shape[1], g_out.shape[1])
            return torch.cat([l_out[:, :cut], g_out[:, :cut]], dim=-1), g_pooled
        return next(iter(results.values()))

    def encode(self, text: str):
        """ComfyUI's ``CLIP.encode``: the cond tensor alone."""
        return self.encode_from_tokens(self.tokenize(text))

    def encode_conditioning(self, text: str, add: dict[str, Any] | None = None) -> list:
        """CONDITIONING for ``text`` (CLIPTextEncode)."""
        return self.encode_from_tokens_scheduled(self.tokenize(text), add_dict=add)

    def set_embedding_dirs(self, dirs: list | None) -> None:
        """Where ``embedding:name`` looks (per CLIP value: shared networks may serve several setups)."""
        for e in self.encoders:
            hidden = e.model.arch.hidden
            loader = make_embedding_loader(list(dirs), hidden, e.spec.name) if dirs else None
            e.tokenizer = Tokenizer(pad_token=e.tokenizer.pad_token, max_length=e.tokenizer.max_length,
                                    embedding_size=hidden, load_embedding=loader)

    def add_patches(self, patches: dict[str, dict[str, Any]], strength: float) -> int:
        used = 0
        for e in self.encoders:
            p = patches.get(e.spec.name)
            if p:
                used += len(e.patcher.add_patches(p, strength))
        return used


def make_embedding_loader(folders: list, size: int, key: str) -> Callable[[str], Any]:
    """A loader for ``embedding:name`` from the embeddings folders (files refused if they need unpickling)."""
    from pathlib import Path

    from hearth.paths import PathError, safe_join
    from hearth.runtime.files import WeightFileError, load_any

    def load(name: str):
        for root in folders:
            root = Path(root)
            for candidate in (name, name + ".safetensors", name + ".pt", name + ".bin"):
                try:
                    path = safe_join(root, candidate)
                except PathError:
                    continue
                if path.is_file():
                    try:
                        data = load_any(path)
                    except WeightFileError as exc:
                        log.warning("embedding %s not loaded: %s", name, exc)
                        return None
                    return _embedding_tensor(data, size, key)
        return None

    return load


def _embedding_tensor(data, size: int, key: str):
    if isinstance(data, dict) or hasattr(data, "keys"):
        keys = list(data.keys())
        if "string_to_param" in keys:
            return next(iter(data["string_to_param"].values())).float()
        if key in keys:
            return data[key].float()
        bundled = [data[k] for k in keys if k.startswith("bundle_emb.") and k.endswith(".string_to_param.*")]
        if bundled:
            return torch.cat(bundled).float()
        for k in keys:
            t = data[k]
            if torch.is_tensor(t) and t.shape[-1] == size:
                return t.reshape(-1, size).float()
        return data[keys[0]].float() if keys else None
    if isinstance(data, list):
        vecs = [t.reshape(-1, t.shape[-1]) for item in data for t in item.values() if t.shape[-1] == size]
        return torch.cat(vecs).float() if vecs else None
    if torch.is_tensor(data):
        return data.float()
    return None
