"""ComfyUI's V3 ``ui`` outputs (``comfy_api.latest.ui``): what a node shows after it runs.

Images are saved with Hearth's folders (``folder_paths`` facade) and carry the prompt metadata
from ``cls.hidden`` unless ``--disable-metadata``.
"""
from __future__ import annotations

import json
import os
import random
from typing import Any

from comfy_api.latest._io import FolderType, _UIOutput
from hearth.compat.shims_support import not_provided_class


class SavedResult(dict):
    def __init__(self, filename: str, subfolder: str, type: FolderType):
        super().__init__(filename=filename, subfolder=subfolder, type=FolderType(type).value)

    @property
    def filename(self) -> str:
        return self["filename"]

    @property
    def subfolder(self) -> str:
        return self["subfolder"]

    @property
    def type(self) -> FolderType:
        return FolderType(self["type"])


class SavedImages(_UIOutput):
    def __init__(self, results: list, is_animated: bool = False):
        self.results = results
        self.is_animated = is_animated

    def as_dict(self) -> dict:
        data: dict[str, Any] = {"images": self.results}
        if self.is_animated:
            data["animated"] = (True,)
        return data


class SavedAudios(_UIOutput):
    def __init__(self, results: list):
        self.results = results

    def as_dict(self) -> dict:
        return {"audio": self.results}


def _directory(folder_type: FolderType) -> str:
    import folder_paths

    return folder_paths.get_directory_by_type(FolderType(folder_type).value)


def _metadata_disabled() -> bool:
    from hearth.compat import binding

    return bool(getattr(binding.app().config, "disable_metadata", False))


class ImageSaveHelper:
    @staticmethod
    def _convert_tensor_to_pil(image_tensor):
        import numpy as np
        from PIL import Image

        return Image.fromarray(np.clip(255.0 * image_tensor.detach().cpu().float().numpy(), 0, 255).astype(np.uint8))

    @staticmethod
    def _create_png_metadata(cls):
        if _metadata_disabled() or cls is None or not cls.hidden:
            return None
        from PIL.PngImagePlugin import PngInfo

        metadata = PngInfo()
        if cls.hidden.prompt:
            metadata.add_text("prompt", json.dumps(cls.hidden.prompt))
        if cls.hidden.extra_pnginfo:
            for key, value in cls.hidden.extra_pnginfo.items():
                metadata.add_text(key, json.dumps(value))
        return metadata

    @staticmethod
    def save_images(images, filename_prefix: str, folder_type: FolderType, cls, compress_level: int = 4) -> list:
        import folder_paths

        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, _directory(folder_type), images[0].shape[1], images[0].shape[0])
        metadata = ImageSaveHelper._create_png_metadata(cls)
        results = []
        for batch_number, tensor in enumerate(images):
            image = ImageSaveHelper._convert_tensor_to_pil(tensor)
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            image.save(os.path.join(full_folder, name), pnginfo=metadata, compress_level=compress_level)
            results.append(SavedResult(name, subfolder, folder_type))
            counter += 1
        return results

    @staticmethod
    def get_save_images_ui(images, filename_prefix: str, cls, compress_level: int = 4) -> SavedImages:
        return SavedImages(ImageSaveHelper.save_images(images, filename_prefix, FolderType.output, cls,
                                                       compress_level))

    @staticmethod
    def save_animated_png(images, filename_prefix: str, folder_type: FolderType, cls, fps: float,
                          compress_level: int) -> SavedResult:
        import folder_paths

        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, _directory(folder_type), images[0].shape[1], images[0].shape[0])
        frames = [ImageSaveHelper._convert_tensor_to_pil(t) for t in images]
        name = f"{filename}_{counter:05}_.png"
        frames[0].save(os.path.join(full_folder, name), compress_level=compress_level, save_all=True,
                       duration=int(1000.0 / fps), append_images=frames[1:])
        return SavedResult(name, subfolder, folder_type)

    @staticmethod
    def get_save_animated_png_ui(images, filename_prefix: str, cls, fps: float, compress_level: int) -> SavedImages:
        result = ImageSaveHelper.save_animated_png(images, filename_prefix, FolderType.output, cls, fps,
                                                   compress_level)
        return SavedImages([result], is_animated=len(images) > 1)

    @staticmethod
    def save_animated_webp(images, filename_prefix: str, folder_type: FolderType, cls, fps: float, lossless: bool,
                           quality: int, method: int) -> SavedResult:
        import folder_paths

        full_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, _directory(folder_type), images[0].shape[1], images[0].shape[0])
        frames = [ImageSaveHelper._convert_tensor_to_pil(t) for t in images]
        name = f"{filename}_{counter:05}_.webp"
        frames[0].save(os.path.join(full_folder, name), save_all=True, duration=int(1000.0 / fps),
                       append_images=frames[1:], lossless=lossless, quality=quality, method=method)
        return SavedResult(name, subfolder, folder_type)

    @staticmethod
    def get_save_animated_webp_ui(images, filename_prefix: str, cls, fps: float, lossless: bool, quality: int,
                                  method: int) -> SavedImages:
        result = ImageSaveHelper.save_animated_webp(images, filename_prefix, FolderType.output, cls, fps, lossless,
                                                    quality, method)
        return SavedImages([result], is_animated=len(images) > 1)


AudioSaveHelper = not_provided_class("comfy_api.latest.ui.AudioSaveHelper", "audio encoding is not in Hearth yet")


def _temp_prefix() -> str:
    return "ComfyUI_temp_" + "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))


class PreviewImage(_UIOutput):
    def __init__(self, image, animated: bool = False, cls=None, **kwargs):
        self.values = ImageSaveHelper.save_images(image, _temp_prefix(), FolderType.temp, cls, compress_level=1)
        self.animated = animated

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    def __init__(self, mask, animated: bool = False, cls=None, **kwargs):
        preview = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(preview, animated, cls, **kwargs)


PreviewAudio = not_provided_class("comfy_api.latest.ui.PreviewAudio", "audio encoding is not in Hearth yet")


class PreviewVideo(_UIOutput):
    def __init__(self, values: list, **kwargs):
        self.values = values

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (True,)}


class PreviewUI3D(_UIOutput):
    def __init__(self, model_file, camera_info, **kwargs):
        self.model_file = model_file
        self.camera_info = camera_info

    def as_dict(self) -> dict:
        return {"result": [self.model_file, self.camera_info]}


class PreviewText(_UIOutput):
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}


__all__ = ["SavedResult", "SavedImages", "SavedAudios", "ImageSaveHelper", "AudioSaveHelper", "PreviewImage",
           "PreviewMask", "PreviewAudio", "PreviewVideo", "PreviewUI3D", "PreviewText"]
