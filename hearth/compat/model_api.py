"""ComfyUI's ``ModelPatcher`` surface on Hearth's MODEL value (``hearth.runtime.model.DiffusionModel``).

Custom node packs receive MODEL values and call ComfyUI's ModelPatcher methods on them. The
``set_model_*`` patch methods come from ``hearth.runtime.unet_patches.PatchableModel``; this mixin adds
the rest that maps onto Hearth's model:

    load_device / offload_device / model_dtype() / model_size()   the model manager and weights holder
    set_model_compute_dtype     ModelComputeDtype's option
    set_model_sampler_pre_cfg_function / set_model_sampler_calc_cond_batch_function   Hearth's guidance
    model                       a view with ComfyUI's BaseModel names (model_sampling, latent_format,
                                model_type, get_dtype(), diffusion_model = the diffusers UNet, device);
                                isinstance checks against comfy.model_base's classes follow the family
    get_model_object / add_object_patch    "model_sampling" and "latent_format"
    add_patches(patches, strength_patch, strength_model)   weight patches keyed by ComfyUI's state-dict
                                names ("diffusion_model.input_blocks.0.0.weight") or Hearth's diffusers
                                names; values are Hearth adapters, ComfyUI's ``(tensor,)`` /
                                ``("diff", (tensor,))`` / ``("set", (tensor,))`` tuples, or the values
                                ``get_key_patches`` returns
    get_key_patches / model_state_dict      keyed by ComfyUI's names
    model_patches_to / model_patches_models / is_clone / clone_has_same_weights

ModelPatcher attributes Hearth has no counterpart for (wrappers, callbacks, injections, attachments,
hook patch internals, ``object_patches`` …) raise ``NotProvidedError`` naming them (still an
AttributeError, so ``hasattr`` is False).

Nothing here imports torch at import time.
"""
from __future__ import annotations

import enum
from typing import Any

from hearth.compat.shims_support import NotProvidedAttributeError, NotProvidedError


class ModelType(enum.Enum):
    """ComfyUI's ``comfy.model_base.ModelType`` (what ``model.model.model_type`` answers)."""
    EPS = 1
    V_PREDICTION = 2
    V_PREDICTION_EDM = 3
    STABLE_CASCADE = 4
    EDM = 5
    FLOW = 6
    V_PREDICTION_CONTINUOUS = 7
    FLUX = 8
    IMG_TO_IMG = 9
    FLOW_COSMOS = 10


def model_type(model_sampling) -> ModelType:
    """The ModelType of a Hearth sampling object (its prediction and, for continuous ones, its time)."""
    prediction = getattr(model_sampling, "prediction", "eps")
    time = getattr(model_sampling, "time", None)
    if prediction == "cosmos_rflow":
        return ModelType.FLOW_COSMOS
    if prediction == "img_to_img":
        return ModelType.IMG_TO_IMG
    if prediction == "edm":
        return ModelType.EDM
    if prediction == "v":
        if time == "v":
            return ModelType.V_PREDICTION_CONTINUOUS
        return ModelType.V_PREDICTION_EDM if time == "edm" else ModelType.V_PREDICTION
    if prediction in ("eps", "lcm"):
        return ModelType.EPS
    raise NotProvidedError(f"no ComfyUI ModelType for Hearth's prediction type {prediction!r}")

UNET_PREFIX = "diffusion_model."

# ComfyUI ModelPatcher attributes that Hearth's MODEL does not offer: asking for one fails loudly.
_NOT_PROVIDED = frozenset({
    "patches", "backup", "object_patches", "object_patches_backup", "weight_wrapper_patches", "patches_uuid",
    "parent", "attachments", "additional_models", "callbacks", "wrappers", "injections", "hook_patches",
    "hook_backup", "cached_hook_patches", "current_hooks", "forced_hooks", "hook_mode", "is_clip",
    "weight_inplace_update", "force_cast_weights", "size",
    "set_model_emb_patch", "set_model_forward_timestep_embed_patch", "set_model_double_block_patch",
    "set_model_post_input_patch", "add_weight_wrapper",
    "add_callback", "add_callback_with_key", "remove_callbacks_with_key", "get_callbacks", "get_all_callbacks",
    "add_wrapper", "add_wrapper_with_key", "remove_wrappers_with_key", "get_wrappers", "get_all_wrappers",
    "set_attachments", "remove_attachments", "get_attachment", "set_injections", "remove_injections",
    "get_injections", "set_additional_models", "remove_additional_models", "get_additional_models_with_key",
    "get_additional_models", "get_nested_additional_models", "use_ejected", "inject_model", "eject_model",
    "pre_run", "prepare_state", "restore_hook_patches", "set_hook_mode", "prepare_hook_patches_current_keyframe",
    "register_all_hook_patches", "add_hook_patches", "get_combined_hook_patches", "apply_hooks", "patch_hooks",
    "unpatch_hooks", "clean_hooks", "patch_weight_to_device", "patch_model", "unpatch_model", "load",
    "partially_load", "partially_unload", "detach", "loaded_size", "lowvram_patch_counter", "memory_required",
    "current_loaded_device", "calculate_weight", "cleanup",
})


def _not_provided(what: str, name: str) -> NotProvidedAttributeError:
    return NotProvidedAttributeError(
        f"{what}.{name} is not provided by Hearth's ComfyUI compatibility layer (Hearth's MODEL is not ComfyUI's "
        "ModelPatcher; see hearth/compat/model_api.py for the part of its API it offers)")


class SetWeight:
    """ComfyUI's ``("set", (tensor,))`` patch: the weight becomes ``tensor``."""

    def __init__(self, tensor) -> None:
        self.tensor = tensor

    def apply(self, w, strength: float):
        if tuple(self.tensor.shape) != tuple(w.shape):
            raise ValueError(f"a 'set' patch of shape {tuple(self.tensor.shape)} does not fit weight "
                             f"{tuple(w.shape)}")
        return self.tensor.to(device=w.device, dtype=w.dtype).clone()


def _adapter(value: Any, key: str):
    """A Hearth weight adapter for one ComfyUI patch value."""
    if hasattr(value, "apply") and callable(value.apply):
        return value
    if isinstance(value, list):
        if len(value) == 1 and hasattr(value[0], "apply"):
            return value[0]
        raise NotProvidedError(
            f"add_patches({key!r}): ComfyUI's list ('merge') patch values are not provided; pass the value "
            "get_key_patches returned for that key")
    if isinstance(value, tuple):
        from hearth.runtime.lora import Diff

        if len(value) == 1:
            return Diff(value[0])
        if len(value) == 2 and isinstance(value[0], str):
            kind, data = value
            if kind == "diff":
                return Diff(data[0])
            if kind == "set":
                return SetWeight(data[0])
            raise NotProvidedError(f"add_patches({key!r}): ComfyUI patch type {kind!r} is not provided "
                                   "(Hearth takes 'diff' and 'set' tuples and its own adapters)")
    if hasattr(value, "calculate_weight"):
        raise NotProvidedError(f"add_patches({key!r}): ComfyUI weight_adapter objects are not provided "
                               "(load LoRAs with comfy.sd.load_lora_for_models)")
    raise ValueError(f"add_patches({key!r}): not a weight patch: {type(value).__name__}")


class LatentFormatView:
    """A Hearth latent format (hearth.runtime.families.LatentFormat) under ComfyUI's attribute names."""

    latent_dimensions = 2

    def __init__(self, fmt) -> None:
        object.__setattr__(self, "hearth_format", fmt)

    @property
    def scale_factor(self) -> float:
        return self.hearth_format.scale_factor

    @property
    def latent_channels(self) -> int:
        return self.hearth_format.channels

    @property
    def latent_rgb_factors(self):
        factors = self.hearth_format.rgb_factors
        return [list(row) for row in factors] if factors else None

    @property
    def latent_rgb_factors_bias(self):
        bias = self.hearth_format.rgb_bias
        return list(bias) if bias else None

    @property
    def taesd_decoder_name(self):
        return self.hearth_format.taesd_decoder

    def process_in(self, latent):
        return self.hearth_format.process_in(latent)

    def process_out(self, latent):
        return self.hearth_format.process_out(latent)

    def __eq__(self, other) -> bool:
        return isinstance(other, LatentFormatView) and other.hearth_format == self.hearth_format

    def __hash__(self) -> int:
        return hash(self.hearth_format)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise _not_provided("LatentFormat", name)


def hearth_latent_format(value):
    """A Hearth latent format from a view (or a Hearth format given as is)."""
    fmt = getattr(value, "hearth_format", value)
    if not (hasattr(fmt, "process_in") and hasattr(fmt, "channels")):
        raise NotProvidedError(f"a latent format of type {type(value).__name__} is not one Hearth can use "
                               "(make it with comfy.latent_formats)")
    return fmt


class BaseModelView:
    """``model.model``: the names packs read from ComfyUI's BaseModel, answered by the Hearth MODEL."""

    def __init__(self, owner) -> None:
        object.__setattr__(self, "_owner", owner)

    @property
    def model_sampling(self):
        return self._owner.model_sampling

    @property
    def latent_format(self) -> LatentFormatView:
        return LatentFormatView(self._owner.latent_format)

    @property
    def model_type(self) -> ModelType:
        """From the current model_sampling (ComfyUI keeps the type the model was loaded with)."""
        return model_type(self._owner.model_sampling)

    @property
    def hearth_family(self) -> str:
        return self._owner.family.name

    @property
    def hearth_ip2p(self) -> bool:
        return self._owner.ip2p

    @property
    def diffusion_model(self):
        """The diffusers UNet (its module names are diffusers', not ldm's)."""
        return self._owner.unet

    @property
    def device(self):
        return self._owner.patcher.holder.device

    @property
    def model_options(self):
        return self._owner.model_options

    def get_dtype(self):
        return self._owner.patcher.holder.dtype

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise _not_provided("ModelPatcher.model", name)


class ModelPatcherAPI:
    """Mixed into DiffusionModel (needs ``patcher``, ``manager``, ``ldm_to_diffusers``, ``model_options``,
    ``model_sampling``, ``latent_format``)."""

    # --- placement and size -------------------------------------------------------------------------
    @property
    def load_device(self):
        return self.manager.device_for("unet")

    @property
    def offload_device(self):
        return self.manager.offload_device

    def model_dtype(self):
        return self.patcher.holder.dtype

    def model_size(self) -> int:
        return self.patcher.holder.size_bytes()

    @property
    def model(self) -> BaseModelView:
        return BaseModelView(self)

    def is_clone(self, other) -> bool:
        patcher = getattr(other, "patcher", None)
        return patcher is not None and patcher.holder is self.patcher.holder

    def clone_has_same_weights(self, other) -> bool:
        return self.is_clone(other) and self.patcher.signature == other.patcher.signature

    # --- object patches -----------------------------------------------------------------------------
    def get_model_object(self, name: str):
        if name == "model_sampling":
            return self.model_sampling
        if name == "latent_format":
            return LatentFormatView(self.latent_format)
        if name == "diffusion_model":
            return self.unet
        raise NotProvidedError(f"ModelPatcher.get_model_object({name!r}) is not provided by Hearth's ComfyUI "
                               "compatibility layer (it answers 'model_sampling', 'latent_format' and "
                               "'diffusion_model')")

    def add_object_patch(self, name: str, obj) -> None:
        if name == "model_sampling":
            self.model_sampling = obj
        elif name == "latent_format":
            self.model_options["latent_format"] = hearth_latent_format(obj)
        else:
            raise NotProvidedError(f"ModelPatcher.add_object_patch({name!r}) is not provided by Hearth's ComfyUI "
                                   "compatibility layer (it patches 'model_sampling' and 'latent_format')")

    def set_model_sampler_pre_cfg_function(self, pre_cfg_function, disable_cfg1_optimization=False) -> None:
        """Run ``pre_cfg_function(args)`` on the cond/uncond predictions before CFG combines them."""
        options = self.model_options
        options["sampler_pre_cfg_function"] = list(options.get("sampler_pre_cfg_function", [])) + [pre_cfg_function]
        if disable_cfg1_optimization:
            options["disable_cfg1_optimization"] = True

    def set_model_sampler_calc_cond_batch_function(self, fn) -> None:
        """Replace the batched cond/uncond evaluation: ``fn({"conds", "input", "sigma", "model", "model_options"})``."""
        self.model_options["sampler_calc_cond_batch_function"] = fn

    def set_model_compute_dtype(self, dtype) -> None:
        """The dtype the network computes in (ModelComputeDtype's option): torch.float16 / bfloat16 / float32,
        or None for the weights' own."""
        if dtype is None:
            self.model_options.pop("compute_dtype", None)
            return
        names = {"torch.float16": "fp16", "torch.bfloat16": "bf16", "torch.float32": "fp32"}
        name = names.get(str(dtype))
        if name is None:
            raise NotProvidedError(f"ModelPatcher.set_model_compute_dtype({dtype}): Hearth computes in float16, "
                                   "bfloat16 or float32")
        self.model_options["compute_dtype"] = name

    # --- model_options patches ----------------------------------------------------------------------
    def _map_patches(self, fn) -> None:
        """Copy-on-write over the patch containers (clones share them), applying ``fn`` to each patch."""
        options = self.model_options
        to = dict(options.get("transformer_options", {}))
        if "patches" in to:
            to["patches"] = {name: [fn(p) for p in plist] for name, plist in to["patches"].items()}
        if "patches_replace" in to:
            to["patches_replace"] = {name: {k: fn(p) for k, p in table.items()}
                                     for name, table in to["patches_replace"].items()}
        options["transformer_options"] = to
        if "model_function_wrapper" in options:
            options["model_function_wrapper"] = fn(options["model_function_wrapper"])

    def model_patches_to(self, device) -> None:
        """Move patches that have a ``to`` method (ComfyUI's rule; dtypes are moved the same way)."""
        self._map_patches(lambda p: p.to(device) if hasattr(p, "to") else p)

    def model_patches_models(self) -> list:
        found: list = []

        def collect(p):
            if hasattr(p, "models"):
                found.extend(p.models())
            return p

        options = self.model_options
        to = options.get("transformer_options", {})
        for plist in to.get("patches", {}).values():
            for p in plist:
                collect(p)
        for table in to.get("patches_replace", {}).values():
            for p in table.values():
                collect(p)
        if "model_function_wrapper" in options:
            collect(options["model_function_wrapper"])
        return found

    # --- weight patches -----------------------------------------------------------------------------
    def _diffusers_key(self, key: str) -> str | None:
        holder = self.patcher.holder
        if holder.has(key):
            return key
        ldm = key[len(UNET_PREFIX):] if key.startswith(UNET_PREFIX) else None
        if ldm is not None:
            return self.ldm_to_diffusers.get(ldm)
        return None

    def add_patches(self, patches: dict, strength_patch: float = 1.0, strength_model: float = 1.0) -> list:
        """ComfyUI's ``add_patches``: returns the keys (as given) that name a weight of this model."""
        converted: dict[str, Any] = {}
        given: dict[str, Any] = {}
        for key, value in patches.items():
            if not isinstance(key, str):
                raise NotProvidedError("add_patches: ComfyUI's (key, offset[, function]) patch keys are not "
                                       "provided by Hearth's compatibility layer")
            target = self._diffusers_key(key)
            if target is None:
                continue
            converted[target] = _adapter(value, key)
            given[target] = key
        used = self.patcher.add_patches(converted, strength_patch, strength_model)
        return [given[k] for k in used]

    def get_key_patches(self, filter_prefix: str | None = None) -> dict:
        """{ComfyUI key: this model's weight of it (base + its patches)}, usable as an ``add_patches`` value
        on a model of the same architecture (ComfyUI's merge nodes' way). The tensors are not copied."""
        pairs = [(UNET_PREFIX + ldm, dif) for ldm, dif in self.ldm_to_diffusers.items()]
        if filter_prefix is not None:
            pairs = [(k, d) for k, d in pairs if k.startswith(filter_prefix)]
        weights = self.patcher.key_patches([d for _, d in pairs])
        return {k: weights[d] for k, d in pairs if d in weights}

    def model_state_dict(self, filter_prefix: str | None = None) -> dict:
        """{ComfyUI key: original (unpatched) tensor} of the UNet; the tensors are the model's own."""
        holder = self.patcher.holder
        out = {}
        for ldm, dif in self.ldm_to_diffusers.items():
            key = UNET_PREFIX + ldm
            if (filter_prefix is None or key.startswith(filter_prefix)) and holder.has(dif):
                out[key] = holder.original(dif)
        return out

    def __getattr__(self, name: str):
        if name in _NOT_PROVIDED:
            raise _not_provided("ModelPatcher", name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def copy_model_options(options: dict) -> dict:
    """A clone's model_options: the dicts and lists packs edit in place are copied (ComfyUI deep-copies)."""
    out = dict(options)
    to = options.get("transformer_options")
    if isinstance(to, dict):
        to = dict(to)
        if isinstance(to.get("patches"), dict):
            to["patches"] = {k: list(v) for k, v in to["patches"].items()}
        if isinstance(to.get("patches_replace"), dict):
            to["patches_replace"] = {k: dict(v) for k, v in to["patches_replace"].items()}
        out["transformer_options"] = to
    for key in ("sampler_post_cfg_function", "sampler_pre_cfg_function"):
        if isinstance(out.get(key), list):
            out[key] = list(out[key])
    return out
