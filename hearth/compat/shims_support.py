"""Helpers the shim modules share: live registry lookups and loud "not provided" errors."""
from __future__ import annotations

from typing import Any, Callable

from hearth.compat import binding


class NotProvidedError(NotImplementedError):
    """A ComfyUI function that Hearth's compatibility layer does not offer (yet)."""


class NotProvidedAttributeError(NotProvidedError, AttributeError):
    """A ComfyUI module attribute Hearth does not offer: loud (a NotProvidedError naming it) and still an
    AttributeError, so ``hasattr`` answers False and ``from m import name`` fails as an ImportError."""


def _missing_attribute(module_name: str, name: str, detail: str = "") -> NotProvidedAttributeError:
    why = detail or "a ComfyUI internal that Hearth's compatibility layer does not provide"
    return NotProvidedAttributeError(f"{module_name}.{name} is not provided by Hearth's ComfyUI compatibility "
                                     f"layer (module {module_name!r} has no attribute {name!r}: {why})")


def lazy_attrs(targets: dict[str, str]) -> dict[str, Callable[[], Any]]:
    """``{"Name": "hearth.module:attr"}`` -> factories importing the target on first access (so a shim
    can forward to modules that import torch without importing torch itself)."""

    def factory(target: str) -> Callable[[], Any]:
        def get() -> Any:
            import importlib

            module, _, attr = target.partition(":")
            value: Any = importlib.import_module(module)
            for part in attr.split("."):
                value = getattr(value, part)
            return value

        return get

    return {name: factory(target) for name, target in targets.items()}


def module_getattr(module_name: str, lazy: dict[str, Callable[[], Any]] | None = None) -> Callable[[str], Any]:
    """A PEP 562 ``__getattr__``: values computed on access, else an error naming the attribute."""
    lazy = lazy or {}

    def __getattr__(name: str) -> Any:
        factory = lazy.get(name)
        if factory is not None:
            return factory()
        if name.startswith("__"):
            raise AttributeError(name)
        raise _missing_attribute(module_name, name)

    return __getattr__


def not_provided(qualname: str, why: str = "") -> Callable[..., Any]:
    """A stand-in that fails loudly when called, naming the missing function (never a silent stub)."""

    def missing(*args: Any, **kwargs: Any) -> Any:
        detail = f": {why}" if why else ""
        raise NotProvidedError(f"{qualname} is not provided by Hearth's ComfyUI compatibility layer{detail}")

    missing.__name__ = qualname.rsplit(".", 1)[-1]
    missing.__qualname__ = qualname
    return missing


def not_provided_class(qualname: str, why: str = "") -> type:
    """A class packs may name or subclass at import time; making one fails loudly, naming it."""
    detail = f": {why}" if why else ""
    message = f"{qualname} is not provided by Hearth's ComfyUI compatibility layer{detail}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotProvidedError(message)

    module, _, name = qualname.rpartition(".")
    return type(name, (), {"__init__": __init__, "__module__": module, "__doc__": message})


def registry_has_module(python_module: str) -> bool:
    state = binding.maybe_state()
    if state is None:
        return False
    registry = state.app.registry
    return any(registry.entry(name).python_module == python_module for name in registry.names())


# Helpers some packs import from comfy_extras modules under ComfyUI's names, mapped onto Hearth's own
# (same parameters as ComfyUI's).
_EXTRAS_ALIASES: dict[str, dict[str, str]] = {
    "comfy_extras.nodes_mask": {"composite": "hearth.nodes.builtin.mask:composite"},
    "comfy_extras.nodes_freelunch": {"Fourier_filter": "hearth.nodes.builtin.model_patches:fourier_filter"},
    "comfy_extras.nodes_sag": {"gaussian_blur_2d": "hearth.nodes.builtin.model_patches:gaussian_blur_2d"},
    "comfy_extras.nodes_post_processing": {"gaussian_kernel": "hearth.nodes.builtin.utility:gaussian_kernel"},
    "comfy_extras.nodes_custom_sampler": {
        "Noise_EmptyNoise": "hearth.sampling.custom:EmptyNoise",
        "Noise_RandomNoise": "hearth.sampling.custom:RandomNoise",
        "Guider_Basic": "hearth.sampling.custom:BasicGuider",
        "Guider_DualCFG": "hearth.sampling.custom:DualCFGGuider",
    },
    "comfy_extras.nodes_perpneg": {
        "Guider_PerpNeg": "hearth.sampling.custom:PerpNegGuider",
        "perp_neg": "hearth.sampling.custom:perp_neg",
    },
}


# ComfyUI class names that differ from the node name (``from comfy_extras.nodes_post_processing import Blur``
# is the ImageBlur node): {python_module: {ComfyUI class name: node name}}.
_EXTRAS_CLASS_NAMES: dict[str, dict[str, str]] = {
    "comfy_extras.nodes_post_processing": {"Blend": "ImageBlend", "Blur": "ImageBlur", "Quantize": "ImageQuantize",
                                           "Sharpen": "ImageSharpen"},
    "comfy_extras.nodes_primitive": {"String": "PrimitiveString", "StringMultiline": "PrimitiveStringMultiline",
                                     "Int": "PrimitiveInt", "Float": "PrimitiveFloat", "Boolean": "PrimitiveBoolean"},
    "comfy_extras.nodes_rebatch": {"LatentRebatch": "RebatchLatents", "ImageRebatch": "RebatchImages"},
    "comfy_extras.nodes_hooks": {"CombineHooks": "CombineHooks2", "CombineHooksFour": "CombineHooks4",
                                 "CombineHooksEight": "CombineHooks8"},
}


def _registry_entries(python_module: str) -> list:
    registry = binding.app().registry
    entries = [registry.entry(name) for name in registry.names()]
    return [(name, e) for name, e in zip(registry.names(), entries) if e is not None
            and e.python_module == python_module]


def registry_module_getattr(python_module: str) -> Callable[[str], Any]:
    """``comfy_extras.nodes_x.Name``, resolved live: the registry's node of that python_module whose
    name (or ComfyUI class name, ``_EXTRAS_CLASS_NAMES``) is ``Name``, or a ComfyUI helper function Hearth
    maps onto its own with the same signature (``_EXTRAS_ALIASES``). Hearth's other helpers are not
    offered under ComfyUI's module names (ComfyUI's modules do not have them)."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = _EXTRAS_ALIASES.get(python_module, {}).get(name)
        if target is not None:
            return lazy_attrs({name: target})[name]()
        entries = _registry_entries(python_module)
        wanted = _EXTRAS_CLASS_NAMES.get(python_module, {}).get(name, name)
        for node_name, entry in entries:
            if node_name == wanted:
                return original_class(entry.cls)
        for _, entry in entries:
            if original_class(entry.cls).__name__ == name:
                return original_class(entry.cls)
        raise _missing_attribute(python_module, name, "Hearth provides this module's node classes and the "
                                 "few helpers listed in hearth/compat/shims_support.py")

    return __getattr__


def original_class(cls: type) -> type:
    """The class a pack defined (a V3 node's own class rather than the engine's adapter)."""
    return getattr(cls, "V3_CLASS", None) or cls
