"""Video nodes (ComfyUI's nodes_video): SaveWEBM, SaveVideo, CreateVideo, GetVideoComponents, LoadVideo.

VIDEO values are hearth.media.video objects; AUDIO values are ``{"waveform": [B, C, T], "sample_rate": int}``.
Files are written with PyAV (``av``), imported only when a node runs.
"""
from __future__ import annotations

import json
import mimetypes
import os

from hearth.media.video import CODECS, CONTAINERS
from hearth.nodes.builtin.image import resolve_annotated
from hearth.nodes.context import current
from hearth.paths import save_image_path

PYTHON_MODULE = "comfy_extras.nodes_video"

# Used only when the system's MIME table does not know an extension at all.
_VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")


def is_video_file_name(name: str) -> bool:
    """ComfyUI's content-type filter: the extension's MIME type is video/*."""
    mime, _ = mimetypes.guess_type(name, strict=False)
    if mime is None:
        return name.lower().endswith(_VIDEO_EXTENSIONS)
    return mime.split("/")[0] == "video"


def _saved(images_width: int, images_height: int, prefix: str):
    ctx = current()
    counters = ctx.folders.save_counters
    folder, filename, counter, subfolder, _ = save_image_path(prefix, ctx.folders.output, images_width,
                                                              images_height, counters)
    os.makedirs(folder, exist_ok=True)
    return folder, filename, counter, subfolder, counters


def _ui(name: str, subfolder: str) -> dict:
    # ComfyUI's PreviewVideo: the saved file under "images", flagged animated.
    return {"ui": {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": (True,)}}


class SaveWEBM:
    CATEGORY = "image/video"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI", "multiline": False}),
                             "codec": ("COMBO", {"multiselect": False, "options": ["vp9", "av1"]}),
                             "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                             "crf": ("FLOAT", {"tooltip": "Constant quality: higher values give smaller files of "
                                                          "lower quality.",
                                               "default": 32.0, "min": 0, "max": 63.0, "step": 1})},
                "hidden": {"prompt": ("PROMPT",), "extra_pnginfo": ("EXTRA_PNGINFO",)}}  # v3 form

    def save_images(self, images, codec, fps, filename_prefix, crf, prompt=None, extra_pnginfo=None):
        from hearth.media.video import save_webm

        folder, filename, counter, subfolder, counters = _saved(images[0].shape[1], images[0].shape[0],
                                                                filename_prefix)
        metadata = {}
        if not current().config.disable_metadata:
            if prompt is not None:
                metadata["prompt"] = json.dumps(prompt)
            if isinstance(extra_pnginfo, dict):
                for key, value in extra_pnginfo.items():
                    metadata[str(key)] = json.dumps(value)
        name = f"{filename}_{counter:05}_.webm"
        save_webm(os.path.join(folder, name), images, codec, float(fps), crf, metadata)
        counters.saved(folder, filename, counter + 1)
        return _ui(name, subfolder)


class SaveVideo:
    CATEGORY = "image/video"
    RETURN_TYPES = ()
    FUNCTION = "save_video"
    OUTPUT_NODE = True
    DESCRIPTION = "Writes a video into the output folder."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": ("VIDEO", {"tooltip": "The video to write."}),
            "filename_prefix": ("STRING", {"tooltip": "Prefix of the file name; may name a subfolder and use "
                                                      "%date:yyyy-MM-dd% style substitutions.",
                                           "default": "video/ComfyUI", "multiline": False}),
            "format": ("COMBO", {"tooltip": "Container format.", "default": "auto", "multiselect": False,
                                 "options": list(CONTAINERS)}),
            "codec": ("COMBO", {"tooltip": "Video codec.", "default": "auto", "multiselect": False,
                                "options": list(CODECS)})},
            "hidden": {"prompt": ("PROMPT",), "extra_pnginfo": ("EXTRA_PNGINFO",)}}  # v3 form

    def save_video(self, video, filename_prefix, format, codec, prompt=None, extra_pnginfo=None):
        from hearth.media.video import container_extension

        width, height = video.get_dimensions()
        folder, filename, counter, subfolder, counters = _saved(width, height, filename_prefix)
        metadata = None
        if not current().config.disable_metadata:
            collected = {}
            if isinstance(extra_pnginfo, dict):
                collected.update(extra_pnginfo)
            if prompt is not None:
                collected["prompt"] = prompt
            metadata = collected or None
        name = f"{filename}_{counter:05}_.{container_extension(format)}"
        video.save_to(os.path.join(folder, name), format=format, codec=codec, metadata=metadata)
        counters.saved(folder, filename, counter + 1)
        return _ui(name, subfolder)


class CreateVideo:
    CATEGORY = "image/video"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "create_video"
    DESCRIPTION = "Makes a VIDEO from a batch of frames, with optional audio."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The frames, in order."}),
                             "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0})},
                "optional": {"audio": ("AUDIO", {"tooltip": "Sound to put under the frames."})}}

    def create_video(self, images, fps, audio=None):
        from fractions import Fraction

        from hearth.media.video import VideoComponents, VideoFromComponents

        return (VideoFromComponents(VideoComponents(images=images, audio=audio, frame_rate=Fraction(fps))),)


class GetVideoComponents:
    CATEGORY = "image/video"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
    FUNCTION = "get_components"
    DESCRIPTION = "Splits a VIDEO into its frames, its audio (or None) and its frame rate."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO", {"tooltip": "The video to take apart."})}}

    def get_components(self, video):
        components = video.get_components()
        return (components.images, components.audio, float(components.frame_rate))


class LoadVideo:
    CATEGORY = "image/video"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "load_video"

    @classmethod
    def INPUT_TYPES(cls):
        folder = current().folders.input
        try:
            names = [f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))]
        except FileNotFoundError:
            names = []
        files = sorted(f for f in names if is_video_file_name(f))
        return {"required": {"file": ("COMBO", {"multiselect": False, "options": files, "video_upload": True})}}

    def load_video(self, file):
        from hearth.media.video import VideoFromFile

        path = resolve_annotated(file) if isinstance(file, str) else None
        if path is None:
            raise FileNotFoundError(f"Invalid video file: {file}")
        video = VideoFromFile(str(path))
        video.get_dimensions()  # refuse at once a file that holds no readable video stream
        return (video,)

    @classmethod
    def IS_CHANGED(cls, file):
        path = resolve_annotated(file) if isinstance(file, str) else None
        return os.path.getmtime(path) if path is not None else ""

    @classmethod
    def VALIDATE_INPUTS(cls, file):
        if not isinstance(file, str) or resolve_annotated(file) is None:
            return f"Invalid video file: {file}"
        return True


NODE_CLASS_MAPPINGS = {
    "SaveWEBM": SaveWEBM,
    "SaveVideo": SaveVideo,
    "CreateVideo": CreateVideo,
    "GetVideoComponents": GetVideoComponents,
    "LoadVideo": LoadVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SaveVideo": "Save Video",
    "CreateVideo": "Create Video",
    "GetVideoComponents": "Get Video Components",
    "LoadVideo": "Load Video",
}
