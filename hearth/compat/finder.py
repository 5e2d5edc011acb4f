"""Makes the ComfyUI module names importable: ``import folder_paths``, ``import comfy.utils`` …

Each name is a small file under ``hearth/compat/shims/`` named as ComfyUI names it, loaded under
that ComfyUI name (so ``comfy.utils.__name__ == "comfy.utils"``). The files hold no state: they
forward to the App that ``hearth.compat.binding`` resolves. A few modules are made from the live
node registry instead of a file: ``comfy_extras.nodes_*`` offers the node classes whose
``python_module`` is that name (Hearth's built-ins mirror ComfyUI's), so
``from comfy_extras.nodes_mask import GrowMask`` gives Hearth's GrowMask (ComfyUI's class names where they
differ from the node name, e.g. ``nodes_post_processing.Blur``), plus a few ComfyUI helpers mapped onto
Hearth's (``composite``, ``Noise_RandomNoise``, ``Guider_Basic`` …; see
shims_support.registry_module_getattr).

The finder sits first on ``sys.meta_path`` once ``install_compat`` ran (only when custom nodes are
enabled), so a stray package with one of these names in site-packages cannot shadow them.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

SHIMS = Path(__file__).resolve().parent / "shims"

# Top-level names Hearth answers for. Anything below them that has no shim file is "not provided".
TOP_LEVEL = frozenset({
    "folder_paths", "server", "nodes", "node_helpers", "latent_preview", "execution", "protocol",
    "comfyui_version", "comfy", "comfy_execution", "comfy_api", "comfy_extras",
})


def provided_by_hearth(module_name: str | None) -> bool:
    """Is this a ComfyUI module name (Hearth's to provide, whether it does or not)?"""
    return bool(module_name) and module_name.partition(".")[0] in TOP_LEVEL


class _RegistryModuleLoader(importlib.abc.Loader):
    """``comfy_extras.nodes_*``: the registry's node classes of that python_module, looked up live."""

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        from hearth.compat.shims_support import registry_module_getattr

        module.__getattr__ = registry_module_getattr(module.__name__)  # type: ignore[attr-defined]
        module.__all__ = []  # names are resolved on access (the registry can grow)


class ShimFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None):
        if not provided_by_hearth(fullname):
            return None
        parts = fullname.split(".")
        base = SHIMS.joinpath(*parts)
        package_init = base / "__init__.py"
        if package_init.is_file():
            return importlib.util.spec_from_file_location(fullname, package_init,
                                                          submodule_search_locations=[str(base)])
        module_file = base.with_suffix(".py")
        if module_file.is_file():
            return importlib.util.spec_from_file_location(fullname, module_file)
        if parts[0] == "comfy_extras" and len(parts) == 2:
            from hearth.compat.shims_support import registry_has_module

            if registry_has_module(fullname):
                return importlib.machinery.ModuleSpec(fullname, _RegistryModuleLoader())
        return None  # the import fails with "No module named …"; the pack loader explains it


def install_finder() -> None:
    """Put the finder first on sys.meta_path (once per process)."""
    if not any(isinstance(f, ShimFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, ShimFinder())
