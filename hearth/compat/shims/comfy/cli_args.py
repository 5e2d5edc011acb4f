"""ComfyUI's ``comfy.cli_args``: ``args`` is the bound server's command line, parsed with ComfyUI's
flag names (Hearth accepts the same flags), so ``args.preview_method`` or ``args.disable_metadata``
describe this server."""
from __future__ import annotations

import enum
from typing import Any

from hearth.compat import binding


class LatentPreviewMethod(enum.Enum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


class PerformanceFeature(enum.Enum):
    Fp16Accumulation = "fp16_accumulation"
    Fp8MatrixMultiplication = "fp8_matrix_mult"
    CublasOps = "cublas_ops"
    AutoTune = "autotune"


class _Args:
    """Attribute access reads the bound App's configuration each time (nothing is copied)."""

    def _namespace(self):
        from hearth.config import build_parser

        app = binding.app()
        ns = build_parser().parse_args(list(app.config.argv))
        ns.preview_method = LatentPreviewMethod(ns.preview_method)
        ns.base_directory = str(app.folders.base)
        return ns

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        ns = self._namespace()
        if not hasattr(ns, name):
            raise AttributeError(f"comfy.cli_args.args has no {name!r}: Hearth does not accept that ComfyUI flag")
        return getattr(ns, name)

    def __repr__(self) -> str:
        return repr(self._namespace())


args = _Args()
