"""ComfyUI's V3 node schema (``comfy_api.latest.io``), written for Hearth.

A V3 node is a class with ``define_schema()`` (a ``Schema`` of typed inputs and outputs) and a
classmethod ``execute(**inputs)`` returning a ``NodeOutput``; optional ``validate_inputs``,
``fingerprint_inputs`` and ``check_lazy_status``. Each input/output type serialises to the same
``/object_info`` entry ComfyUI gives (``Schema.get_v1_info``). Hearth's engine runs V1 classes, so
the loader wraps every V3 class in an adapter made by ``hearth.compat.v3``; the class itself is left
exactly as the pack wrote it.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Callable, Literal

from hearth.engine.graph import ExecutionBlocker


def prune_dict(d: dict) -> dict:
    """The dict without its None values (ComfyUI omits unset options)."""
    return {k: v for k, v in d.items() if v is not None}


class classproperty:
    def __init__(self, getter: Callable) -> None:
        self.getter = getter

    def __get__(self, obj, owner):
        return self.getter(owner)


def _schema_field(name: str) -> classproperty:
    """A V1 class attribute read from the node's V3 schema."""
    return classproperty(lambda cls: getattr(cls.GET_SCHEMA(), name))


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


class RemoteOptions:
    """A combo whose options come from an HTTP route."""

    def __init__(self, route: str, refresh_button: bool, control_after_refresh: Literal["first", "last"] = "first",
                 timeout: int | None = None, max_retries: int | None = None, refresh: int | None = None):
        self.route = route
        self.refresh_button = refresh_button
        self.control_after_refresh = control_after_refresh
        self.timeout = timeout
        self.max_retries = max_retries
        self.refresh = refresh

    def as_dict(self) -> dict:
        return prune_dict({"route": self.route, "refresh_button": self.refresh_button,
                           "control_after_refresh": self.control_after_refresh, "timeout": self.timeout,
                           "max_retries": self.max_retries, "refresh": self.refresh})


class _StringIOType(str):
    """A type name that also matches "*" and overlapping comma-separated unions (ComfyUI's rule)."""

    def __ne__(self, value: object) -> bool:
        if self == "*" or value == "*":
            return False
        if not isinstance(value, str):
            return True
        mine, theirs = frozenset(self.split(",")), frozenset(value.split(","))
        return not (mine <= theirs or theirs <= mine)

    __hash__ = str.__hash__


# --- inputs and outputs ---------------------------------------------------------------------------
class _ComfyType(ABC):
    Type = Any
    io_type: str = None  # type: ignore[assignment]


class _IO_V3:
    """Base of V3 inputs and outputs; ``Parent`` is the ComfyType they belong to."""

    Parent: Any = None

    @property
    def io_type(self):
        return self.Parent.io_type

    @property
    def Type(self):
        return self.Parent.Type


class Input(_IO_V3):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, extra_dict: dict | None = None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}

    def as_dict(self) -> dict:
        return prune_dict({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                           "lazy": self.lazy}) | prune_dict(self.extra_dict)

    def get_io_type(self):
        return _StringIOType(self.io_type)


class WidgetInput(Input):
    """An input that can be a widget (a value typed in the node) as well as a socket."""

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: Any = None, socketless: bool | None = None,
                 widget_type: str | None = None, force_input: bool | None = None, extra_dict: dict | None = None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict:
        return super().as_dict() | prune_dict({"default": self.default, "socketless": self.socketless,
                                               "widgetType": self.widget_type, "forceInput": self.force_input})

    def get_io_type(self):
        return self.widget_type if self.widget_type is not None else super().get_io_type()


class Output(_IO_V3):
    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self) -> dict:
        return prune_dict({"display_name": self.display_name, "tooltip": self.tooltip,
                           "is_output_list": self.is_output_list})

    def get_io_type(self):
        return self.io_type


def _subclass_with_parent(base: type | None) -> type | None:
    """A fresh subclass of an Input/Output class, so setting its Parent touches no other type."""
    if base is None:
        return None
    attrs = {k: v for k, v in base.__dict__.items() if k not in ("__dict__", "__weakref__")}
    new = type(base.__name__, (base,), attrs)
    new.__qualname__ = base.__qualname__
    return new


def comfytype(io_type: str, **kwargs):
    """Class decorator: make ``cls`` a ComfyType whose Input/Output classes know it as their Parent."""

    def decorate(cls):
        if isinstance(cls, type) and issubclass(cls, _ComfyType):
            new_cls = cls
            if "Input" in dir(new_cls) and getattr(new_cls, "Input", None) is not None:
                new_cls.Input = _subclass_with_parent(new_cls.Input)
            if "Output" in dir(new_cls) and getattr(new_cls, "Output", None) is not None:
                new_cls.Output = _subclass_with_parent(new_cls.Output)
        else:
            attrs = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
            new_cls = type(cls.__name__, (cls, ComfyTypeIO), attrs)
        new_cls.io_type = _StringIOType(io_type)
        if getattr(new_cls, "Input", None) is not None:
            new_cls.Input.Parent = new_cls
        if getattr(new_cls, "Output", None) is not None:
            new_cls.Output.Parent = new_cls
        return new_cls

    return decorate


class ComfyTypeI(_ComfyType):
    """A type that is only ever an input."""

    class Input(Input):
        pass


class ComfyTypeIO(ComfyTypeI):
    """A type that is both an input and an output."""

    class Output(Output):
        pass


def Custom(io_type: str) -> type:
    """A ComfyType for a custom socket type name."""

    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO):
        pass

    return CustomComfyType


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: bool | None = None,
                     label_on: str | None = None, label_off: str | None = None, socketless: bool | None = None,
                     force_input: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.label_on = label_on
            self.label_off = label_off

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({"label_on": self.label_on, "label_off": self.label_off})


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: int | None = None,
                     min: int | None = None, max: int | None = None, step: int | None = None,
                     control_after_generate: bool | None = None, display_mode: NumberDisplay | None = None,
                     socketless: bool | None = None, force_input: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min = min
            self.max = max
            self.step = step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({
                "min": self.min, "max": self.max, "step": self.step,
                "control_after_generate": self.control_after_generate,
                "display": self.display_mode.value if self.display_mode else None})


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: float | None = None,
                     min: float | None = None, max: float | None = None, step: float | None = None,
                     round: float | None = None, display_mode: NumberDisplay | None = None,
                     socketless: bool | None = None, force_input: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min = min
            self.max = max
            self.step = step
            self.round = round
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({"min": self.min, "max": self.max, "step": self.step,
                                                   "round": self.round, "display": self.display_mode})


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, multiline: bool = False,
                     placeholder: str | None = None, default: str | None = None,
                     dynamic_prompts: bool | None = None, socketless: bool | None = None,
                     force_input: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({"multiline": self.multiline, "placeholder": self.placeholder,
                                                   "dynamicPrompts": self.dynamic_prompts})


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        """A drop-down of ``options`` (a list, or an Enum class whose values are the options)."""

        Type = str

        def __init__(self, id: str, options: Any = None, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: Any = None,
                     control_after_generate: bool | None = None, upload: UploadType | None = None,
                     image_folder: FolderType | None = None, remote: RemoteOptions | None = None,
                     socketless: bool | None = None):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [member.value for member in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
            self.multiselect = False
            self.options = options
            self.control_after_generate = control_after_generate
            self.upload = upload
            self.image_folder = image_folder
            self.remote = remote

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({
                "multiselect": self.multiselect, "options": self.options,
                "control_after_generate": self.control_after_generate,
                **({self.upload.value: True} if self.upload is not None else {}),
                "image_folder": self.image_folder.value if self.image_folder else None,
                "remote": self.remote.as_dict() if self.remote else None})

    class Output(Output):
        def __init__(self, id: str | None = None, display_name: str | None = None, options: list | None = None,
                     tooltip: str | None = None, is_output_list: bool = False):
            super().__init__(id, display_name, tooltip, is_output_list)
            self.options = options if options is not None else []

        @property
        def io_type(self):
            return self.options


@comfytype(io_type="COMBO")
class MultiCombo(ComfyTypeI):
    Type = list

    class Input(Combo.Input):
        def __init__(self, id: str, options: list, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: list | None = None,
                     placeholder: str | None = None, chip: bool | None = None,
                     control_after_generate: bool | None = None, socketless: bool | None = None):
            super().__init__(id, options, display_name, optional, tooltip, lazy, default, control_after_generate,
                             socketless=socketless)
            self.multiselect = True
            self.placeholder = placeholder
            self.chip = chip

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({"multi_select": self.multiselect, "placeholder": self.placeholder,
                                                   "chip": self.chip})


@comfytype(io_type="WEBCAM")
class Webcam(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        Type = str

        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: str | None = None,
                     socketless: bool | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)


def _plain(io_type: str, name: str) -> type:
    """A socket-only type (no widget): IMAGE, LATENT, MODEL …"""
    return comfytype(io_type=io_type)(type(name, (ComfyTypeIO,), {"__module__": __name__, "Type": Any}))


Image = _plain("IMAGE", "Image")
WanCameraEmbedding = _plain("WAN_CAMERA_EMBEDDING", "WanCameraEmbedding")
Mask = _plain("MASK", "Mask")
Latent = _plain("LATENT", "Latent")
Conditioning = _plain("CONDITIONING", "Conditioning")
Sampler = _plain("SAMPLER", "Sampler")
Sigmas = _plain("SIGMAS", "Sigmas")
Noise = _plain("NOISE", "Noise")
Guider = _plain("GUIDER", "Guider")
Clip = _plain("CLIP", "Clip")
ControlNet = _plain("CONTROL_NET", "ControlNet")
Vae = _plain("VAE", "Vae")
Model = _plain("MODEL", "Model")
ClipVision = _plain("CLIP_VISION", "ClipVision")
ClipVisionOutput = _plain("CLIP_VISION_OUTPUT", "ClipVisionOutput")
StyleModel = _plain("STYLE_MODEL", "StyleModel")
Gligen = _plain("GLIGEN", "Gligen")
UpscaleModel = _plain("UPSCALE_MODEL", "UpscaleModel")
Audio = _plain("AUDIO", "Audio")
Video = _plain("VIDEO", "Video")
SVG = _plain("SVG", "SVG")
LoraModel = _plain("LORA_MODEL", "LoraModel")
LossMap = _plain("LOSS_MAP", "LossMap")
Voxel = _plain("VOXEL", "Voxel")
Mesh = _plain("MESH", "Mesh")
Hooks = _plain("HOOKS", "Hooks")
HookKeyframes = _plain("HOOK_KEYFRAMES", "HookKeyframes")
TimestepsRange = _plain("TIMESTEPS_RANGE", "TimestepsRange")
LatentOperation = _plain("LATENT_OPERATION", "LatentOperation")
FlowControl = _plain("FLOW_CONTROL", "FlowControl")
Accumulation = _plain("ACCUMULATION", "Accumulation")
Load3DCamera = _plain("LOAD3D_CAMERA", "Load3DCamera")
Load3D = _plain("LOAD_3D", "Load3D")
Load3DAnimation = _plain("LOAD_3D_ANIMATION", "Load3DAnimation")
Photomaker = _plain("PHOTOMAKER", "Photomaker")
Point = _plain("POINT", "Point")
FaceAnalysis = _plain("FACE_ANALYSIS", "FaceAnalysis")
BBOX = _plain("BBOX", "BBOX")
SEGS = _plain("SEGS", "SEGS")
AnyType = _plain("*", "AnyType")
MODEL_PATCH = _plain("MODEL_PATCH", "MODEL_PATCH")
AudioEncoder = _plain("AUDIO_ENCODER", "AudioEncoder")
AudioEncoderOutput = _plain("AUDIO_ENCODER_OUTPUT", "AudioEncoderOutput")


@comfytype(io_type="COMFY_MULTITYPED_V3")
class MultiType:
    Type = Any

    class Input(Input):
        """An input that accepts several types; given an Input as ``id``, that input's widget is used."""

        def __init__(self, id: Any, types: list, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict | None = None):
            self.input_override = None
            if isinstance(id, Input):
                self.input_override = copy.copy(id)
                optional = True if id.optional is True else optional
                tooltip = id.tooltip if id.tooltip is not None else tooltip
                display_name = id.display_name if id.display_name is not None else display_name
                lazy = id.lazy if id.lazy is not None else lazy
                id = id.id
                if isinstance(self.input_override, WidgetInput):
                    self.input_override.widget_type = self.input_override.get_io_type()
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            self._io_types = types

        @property
        def io_types(self) -> list:
            return [t if isinstance(t, type) else type(t) for t in self._io_types]

        def get_io_type(self):
            names = [t.io_type for t in self.io_types]
            if self.input_override is not None:
                names.insert(0, self.input_override.get_io_type())
            return ",".join(dict.fromkeys(names))

        def as_dict(self) -> dict:
            if self.input_override is not None:
                return self.input_override.as_dict() | super().as_dict()
            return super().as_dict()


class DynamicInput(Input, ABC):
    """An input that stands for several (``get_dynamic``)."""

    @abstractmethod
    def get_dynamic(self) -> list:
        ...


class DynamicOutput(Output, ABC):
    @abstractmethod
    def get_dynamic(self) -> list:
        ...


@comfytype(io_type="COMFY_AUTOGROW_V3")
class AutogrowDynamic(ComfyTypeI):
    Type = list

    class Input(DynamicInput):
        def __init__(self, id: str, template_input: Input, min: int = 1, max: int | None = None,
                     display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                     lazy: bool | None = None, extra_dict: dict | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            if min is not None and min < 1 or max is not None and max < 1:
                raise ValueError("AutogrowDynamic: min and max must be at least 1")
            self.template_input = template_input
            self.min = min
            self.max = max

        def get_dynamic(self) -> list:
            inputs = []
            for index in range(1, max(self.min, self.max or 0) + 1):
                new = copy.copy(self.template_input)
                new.id = f"{new.id}{index}_${self.id}_ag$"
                if new.display_name is not None:
                    new.display_name = f"{new.display_name}{index}"
                new.optional = (self.optional or new.optional) if index <= self.min else True
                if isinstance(self.template_input, WidgetInput):
                    new.force_input = True
                inputs.append(new)
            return inputs


@comfytype(io_type="COMFY_MATCHTYPE_V3")
class MatchType(ComfyTypeIO):
    class Template:
        def __init__(self, template_id: str, allowed_types: Any):
            self.template_id = template_id
            self.allowed_types = [allowed_types] if isinstance(allowed_types, _ComfyType) else allowed_types

        def as_dict(self) -> dict:
            return {"template_id": self.template_id,
                    "allowed_types": "".join(t.io_type for t in self.allowed_types)}

    class Input(DynamicInput):
        def __init__(self, id: str, template: "MatchType.Template", display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     extra_dict: dict | None = None):
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
            self.template = template

        def get_dynamic(self) -> list:
            return [self]

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({"template": self.template.as_dict()})

    class Output(DynamicOutput):
        def __init__(self, id: str, template: "MatchType.Template", display_name: str | None = None,
                     tooltip: str | None = None, is_output_list: bool = False):
            super().__init__(id, display_name, tooltip, is_output_list)
            self.template = template

        def get_dynamic(self) -> list:
            return [self]

        def as_dict(self) -> dict:
            return super().as_dict() | prune_dict({"template": self.template.as_dict()})


# --- hidden inputs ----------------------------------------------------------------------------------
class Hidden(str, Enum):
    """Values a node can ask for that are not inputs: ``cls.hidden.<name>`` while it runs."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """``cls.hidden`` during a call: the hidden values the schema asked for (others read as None)."""

    def __init__(self, unique_id=None, prompt=None, extra_pnginfo=None, dynprompt=None, auth_token_comfy_org=None,
                 api_key_comfy_org=None, **kwargs):
        self.unique_id = unique_id
        self.prompt = prompt
        self.extra_pnginfo = extra_pnginfo
        self.dynprompt = dynprompt
        self.auth_token_comfy_org = auth_token_comfy_org
        self.api_key_comfy_org = api_key_comfy_org

    def __getattr__(self, key: str):
        return None

    @classmethod
    def from_dict(cls, d: dict | None) -> "HiddenHolder":
        d = d or {}
        return cls(**{member.name: d.get(member) for member in Hidden})


# --- the schema ------------------------------------------------------------------------------------
@dataclass
class NodeInfoV1:
    input: dict = None
    input_order: dict = None
    output: list = None
    output_is_list: list = None
    output_name: list = None
    output_tooltips: list = None
    name: str = None
    display_name: str = None
    description: str = None
    python_module: Any = None
    category: str = None
    output_node: bool = None
    deprecated: bool = None
    experimental: bool = None
    api_node: bool = None


@dataclass
class NodeInfoV3:
    input: dict = None
    output: dict = None
    hidden: list = None
    name: str = None
    display_name: str = None
    description: str = None
    python_module: Any = None
    category: str = None
    output_node: bool = None
    deprecated: bool = None
    experimental: bool = None
    api_node: bool = None


@dataclass
class Schema:
    """A V3 node's definition."""

    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = None
    outputs: list = None
    hidden: list = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        """Input and output ids must be unique, within and across the two lists."""
        input_ids = [i.id for i in self.inputs or []]
        output_ids = [o.id for o in self.outputs or []]
        problems = []
        for kind, ids in (("Input", input_ids), ("Output", output_ids)):
            repeated = [name for name, count in Counter(ids).items() if count > 1]
            if repeated:
                problems.append(f"{kind} ids must be unique, but {repeated} are not.")
        shared = set(input_ids) & set(output_ids)
        if shared:
            problems.append(f"Ids must be unique between inputs and outputs, but {shared} are not.")
        if problems:
            raise ValueError("\n".join(problems))

    def finalize(self) -> None:
        """Add the hidden values output and API nodes need; give unnamed outputs their default ids."""
        wanted = []
        if self.is_api_node:
            wanted += [Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org]
        if self.is_output_node:
            wanted += [Hidden.prompt, Hidden.extra_pnginfo]
        for item in wanted:
            if self.hidden is None:
                self.hidden = []
            if item not in self.hidden:
                self.hidden.append(item)
        for index, output in enumerate(self.outputs or []):
            if output.id is None:
                output.id = f"_{index}_{output.io_type}_"

    def v1_inputs(self) -> dict:
        inputs: dict[str, dict] = {"required": {}}
        for item in self.inputs or []:
            for one in (item.get_dynamic() if isinstance(item, DynamicInput) else [item]):
                add_to_dict_v1(one, inputs)
        for hidden in self.hidden or []:
            inputs.setdefault("hidden", {})[hidden.name] = (hidden.value,)
        return inputs

    def get_v1_info(self, cls) -> NodeInfoV1:
        inputs = self.v1_inputs()
        outputs = self.outputs or []
        return NodeInfoV1(
            input=inputs,
            input_order={section: list(spec) for section, spec in inputs.items()},
            output=[o.io_type for o in outputs],
            output_is_list=[o.is_output_list for o in outputs],
            output_name=[o.display_name or o.io_type for o in outputs],
            output_tooltips=[o.tooltip or None for o in outputs],
            name=self.node_id,
            display_name=self.display_name,
            description=self.description,
            python_module=getattr(cls, "RELATIVE_PYTHON_MODULE", None) or "nodes",
            category=self.category,
            output_node=self.is_output_node,
            deprecated=self.is_deprecated,
            experimental=self.is_experimental,
            api_node=self.is_api_node,
        )

    def get_v3_info(self, cls) -> NodeInfoV3:
        return NodeInfoV3(
            input={i.id: (i.get_io_type(), i.as_dict()) for i in self.inputs or []},
            output={o.id: (o.get_io_type(), o.as_dict()) for o in self.outputs or []},
            hidden=[h.value for h in self.hidden or []],
            name=self.node_id, display_name=self.display_name, description=self.description,
            python_module=getattr(cls, "RELATIVE_PYTHON_MODULE", None) or "nodes", category=self.category,
            output_node=self.is_output_node, deprecated=self.is_deprecated, experimental=self.is_experimental,
            api_node=self.is_api_node)


def add_to_dict_v1(i: Input, inputs: dict) -> None:
    section = "optional" if i.optional else "required"
    options = i.as_dict()
    options.pop("optional", None)
    inputs.setdefault(section, {})[i.id] = (i.get_io_type(), options)


def add_to_dict_v3(io: Any, d: dict) -> None:
    d[io.id] = (io.get_io_type(), io.as_dict())


# --- nodes -----------------------------------------------------------------------------------------
class _ComfyNodeInternal:
    """Marks V3 node classes (ComfyUI's name)."""


class _NodeOutputInternal:
    """Marks V3 node results (ComfyUI's name)."""


class _UIOutput(ABC):
    @abstractmethod
    def as_dict(self) -> dict:
        ...


class ComfyNode(_ComfyNodeInternal):
    """Base class of V3 nodes. Subclasses define ``define_schema`` and ``execute`` (classmethods).

    ``cls.hidden`` holds the hidden values during a call; the V1 attributes (RETURN_TYPES …) are
    read from the schema, as in ComfyUI, for packs that inspect them.
    """

    RELATIVE_PYTHON_MODULE = None
    SCHEMA = None
    hidden: HiddenHolder = None
    resources = None

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> "NodeOutput":
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs) -> list:
        return [name for name, value in kwargs.items() if value is None]

    @classmethod
    def GET_BASE_CLASS(cls):
        return ComfyNode

    def __init__(self) -> None:
        self.local_resources = None
        type(self).VALIDATE_CLASS()

    @classmethod
    def VALIDATE_CLASS(cls) -> None:
        for name in ("define_schema", "execute"):
            if first_real_override(cls, name) is None:
                raise TypeError(f"No {name} function was defined for node class {cls.__name__}.")

    @classmethod
    def FINALIZE_SCHEMA(cls) -> Schema:
        schema = cls.define_schema()
        schema.finalize()
        return schema

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        cls.VALIDATE_CLASS()
        schema = cls.FINALIZE_SCHEMA()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict:
        return asdict(cls.GET_SCHEMA().get_v1_info(cls))

    @classmethod
    def GET_NODE_INFO_V3(cls) -> dict:
        return asdict(cls.GET_SCHEMA().get_v3_info(cls))

    @classmethod
    def INPUT_TYPES(cls, include_hidden: bool = True, return_schema: bool = False):
        schema = cls.FINALIZE_SCHEMA()
        inputs = schema.v1_inputs()
        if not include_hidden:
            inputs.pop("hidden", None)
        return (inputs, schema) if return_schema else inputs

    # The V1 attributes, read from the schema (packs sometimes inspect them on V3 classes).
    @classproperty
    def RETURN_TYPES(cls):
        return tuple(o.io_type for o in cls.GET_SCHEMA().outputs or [])

    @classproperty
    def RETURN_NAMES(cls):
        return tuple(o.display_name or o.io_type for o in cls.GET_SCHEMA().outputs or [])

    @classproperty
    def OUTPUT_IS_LIST(cls):
        return tuple(o.is_output_list for o in cls.GET_SCHEMA().outputs or [])

    @classproperty
    def OUTPUT_TOOLTIPS(cls):
        return tuple(o.tooltip or None for o in cls.GET_SCHEMA().outputs or [])

    CATEGORY = _schema_field("category")
    DESCRIPTION = _schema_field("description")
    OUTPUT_NODE = _schema_field("is_output_node")
    INPUT_IS_LIST = _schema_field("is_input_list")
    NOT_IDEMPOTENT = _schema_field("not_idempotent")
    DEPRECATED = _schema_field("is_deprecated")
    EXPERIMENTAL = _schema_field("is_experimental")
    API_NODE = _schema_field("is_api_node")


def first_real_override(cls: type, name: str, *, base: type | None = None):
    """``cls.name`` when some class between ``cls`` and the base defines it, else None."""
    base = base or (cls.GET_BASE_CLASS() if hasattr(cls, "GET_BASE_CLASS") else ComfyNode)
    placeholder = base.__dict__.get(name)
    for klass in cls.__mro__:
        if klass is base:
            break
        if name in klass.__dict__ and klass.__dict__[name] is not placeholder:
            return getattr(cls, name)
    return None


class NodeOutput(_NodeOutputInternal):
    """What ``execute`` returns: the outputs in order, plus optional ``ui``, ``expand`` and ``block_execution``."""

    def __init__(self, *args: Any, ui: Any = None, expand: dict | None = None, block_execution: str | None = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    @classmethod
    def from_dict(cls, data: dict) -> "NodeOutput":
        result = data.get("result", ())
        if isinstance(result, ExecutionBlocker):
            return cls(block_execution=result.message)
        return cls(*(result or ()), ui=data.get("ui"), expand=data.get("expand"))

    def __getitem__(self, index):
        return self.args[index]


__all__ = [
    "FolderType", "UploadType", "RemoteOptions", "NumberDisplay", "comfytype", "Custom", "Input", "WidgetInput",
    "Output", "ComfyTypeI", "ComfyTypeIO", "Boolean", "Int", "Float", "String", "Combo", "MultiCombo", "Image",
    "WanCameraEmbedding", "Webcam", "Mask", "Latent", "Conditioning", "Sampler", "Sigmas", "Noise", "Guider", "Clip",
    "ControlNet", "Vae", "Model", "ClipVision", "ClipVisionOutput", "AudioEncoder", "AudioEncoderOutput",
    "StyleModel", "Gligen", "UpscaleModel", "Audio", "Video", "SVG", "LoraModel", "LossMap", "Voxel", "Mesh",
    "Hooks", "HookKeyframes", "TimestepsRange", "LatentOperation", "FlowControl", "Accumulation", "Load3DCamera",
    "Load3D", "Load3DAnimation", "Photomaker", "Point", "FaceAnalysis", "BBOX", "SEGS", "AnyType", "MultiType",
    "MODEL_PATCH", "DynamicInput", "DynamicOutput", "AutogrowDynamic", "MatchType", "HiddenHolder", "Hidden",
    "NodeInfoV1", "NodeInfoV3", "Schema", "ComfyNode", "NodeOutput", "add_to_dict_v1", "add_to_dict_v3",
]
