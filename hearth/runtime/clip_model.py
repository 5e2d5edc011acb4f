"""A CLIP text transformer whose parameter names are Hugging Face's (``text_model.*``).

Written out here (rather than calling ``transformers.CLIPTextModel``) because Stable Diffusion needs what
that class's forward does not expose stably across versions: token embeddings supplied directly
(textual inversion), the hidden state of an arbitrary layer with or without the final layer norm (clip
skip), and the pooled state at the first end token. The weights load unchanged from HF-layout files.
"""
from __future__ import annotations

import torch
from torch import nn

from hearth.runtime.arch import ClipArch

_ACTIVATIONS = {
    "quick_gelu": lambda a: a * torch.sigmoid(1.702 * a),
    "gelu": nn.functional.gelu,
}


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, n, h, d // h).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                                         split(self.v_proj(x)), attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class _MLP(nn.Module):
    def __init__(self, dim: int, inner: int, activation: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, inner)
        self.fc2 = nn.Linear(inner, dim)
        self.act = _ACTIVATIONS[activation]

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Layer(nn.Module):
    def __init__(self, arch: ClipArch) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(arch.hidden, eps=1e-5)
        self.self_attn = _Attention(arch.hidden, arch.heads)
        self.layer_norm2 = nn.LayerNorm(arch.hidden, eps=1e-5)
        self.mlp = _MLP(arch.hidden, arch.intermediate, arch.activation)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class _Embeddings(nn.Module):
    def __init__(self, arch: ClipArch) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(arch.vocab, arch.hidden)
        self.position_embedding = nn.Embedding(arch.positions, arch.hidden)


class _Encoder(nn.Module):
    def __init__(self, arch: ClipArch) -> None:
        super().__init__()
        self.layers = nn.ModuleList([_Layer(arch) for _ in range(arch.layers)])


class _TextModel(nn.Module):
    def __init__(self, arch: ClipArch) -> None:
        super().__init__()
        self.embeddings = _Embeddings(arch)
        self.encoder = _Encoder(arch)
        self.final_layer_norm = nn.LayerNorm(arch.hidden, eps=1e-5)


class ClipTextModel(nn.Module):
    def __init__(self, arch: ClipArch) -> None:
        super().__init__()
        self.arch = arch
        self.text_model = _TextModel(arch)
        if arch.projection_dim is not None:
            self.text_projection = nn.Linear(arch.hidden, arch.projection_dim, bias=False)
        else:
            self.text_projection = None

    @property
    def num_layers(self) -> int:
        return self.arch.layers

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_model.embeddings.token_embedding(tokens)

    def forward(self, embeds: torch.Tensor, eos_index: list[int], layer_idx: int | None,
                final_norm_on_hidden: bool):
        """embeds [B, T, D] (token embeddings, positions added here).

        Returns (last hidden state after the final norm, hidden state after layer ``layer_idx`` or None,
        pooled state at ``eos_index``, projected pooled state or None).
        """
        tm = self.text_model
        t = embeds.shape[1]
        x = embeds + tm.embeddings.position_embedding.weight[:t].to(embeds.dtype)
        mask = torch.full((t, t), -torch.finfo(x.dtype).max, dtype=x.dtype, device=x.device).triu_(1)
        n = len(tm.encoder.layers)
        want = None if layer_idx is None else (layer_idx if layer_idx >= 0 else n + layer_idx)
        intermediate = None
        for i, layer in enumerate(tm.encoder.layers):
            x = layer(x, mask)
            if i == want:
                intermediate = x.clone()
        x = tm.final_layer_norm(x)
        if intermediate is not None and final_norm_on_hidden:
            intermediate = tm.final_layer_norm(intermediate)
        pooled = x[torch.arange(x.shape[0], device=x.device), torch.tensor(eos_index, device=x.device)]
        projected = self.text_projection(pooled) if self.text_projection is not None else None
        return x, intermediate, pooled, projected
