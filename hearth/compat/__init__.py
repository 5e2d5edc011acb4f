"""The module names ComfyUI custom nodes import (folder_paths, server, nodes, comfy.*, …),
backed by Hearth's real objects. ``install_compat(app)`` makes them importable for an App.

    folder_paths                 -> app.folders (hearth.paths.Folders)
    server.PromptServer.instance -> app.custom_routes, app.hub, the running prompt (engine progress)
    nodes                        -> app.registry (NODE_CLASS_MAPPINGS is the live registry)
    comfy.utils / model_management / samplers / sample / sd, latent_preview, node_helpers
                                 -> hearth.engine.progress, hearth.runtime, hearth.sampling
    comfy.model_patcher          -> hearth.runtime.model.DiffusionModel, which carries ComfyUI's
                                    ModelPatcher API (set_model_* patches, add_patches,
                                    get_key_patches, model.model …; hearth.compat.model_api)
    comfy.controlnet / clip_vision / hooks / lora / model_sampling / model_base / latent_formats,
    comfy.ldm.modules.attention  -> hearth.runtime.controlnet / clip_vision / lora,
                                    hearth.sampling.hooks / model_sampling, unet_patches' attention
    comfy_extras.nodes_*         -> the built-in nodes of that python_module (live registry) and a
                                    few ComfyUI helpers mapped onto Hearth's
    comfy_api (latest, v0_0_2, input, input_impl, util) video types -> hearth.media.video
    comfy_execution.graph(_utils)-> hearth.engine.graph
    comfy_api (latest, v0_0_2)   -> the V3 node schema (io, ui, ComfyExtension), adapted to the
                                    V1 class protocol the engine runs (hearth.compat.v3)

Nothing here imports torch: the modules that need it import it when a function is called. A ComfyUI
name Hearth does not map raises NotProvidedError naming it (an AttributeError too, so ``hasattr`` and
``from module import name`` behave as for any missing name); a module Hearth does not provide fails to
import, and the pack loader says it is a ComfyUI internal.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hearth.app import App


def install_compat(app: "App") -> None:
    """Bind the compatibility modules to ``app`` before custom node packs are imported."""
    from hearth.compat import binding
    from hearth.compat.finder import install_finder

    binding.install(app)
    install_finder()


def trigger_on_prompt(app: "App", json_data: Any) -> Any:
    """Run the packs' ``PromptServer.instance.add_on_prompt_handler`` handlers on a POST /prompt body.

    Each handler gets the body and returns it (possibly changed); one that raises is logged and
    skipped, as ComfyUI does. Without custom nodes this returns the body unchanged.
    """
    import logging

    from hearth.compat.binding import SERVICE

    state = app.node_context.services.get(SERVICE)
    if state is None:
        return json_data
    for handler in list(state.on_prompt_handlers):
        try:
            json_data = handler(json_data)
        except Exception:
            logging.getLogger(__name__).exception("an on_prompt handler of a custom node pack failed")
    return json_data
