"""ComfyUI's ``folder_paths``, over the bound App's ``hearth.paths.Folders``.

Every function reads and writes the App's Folders: a folder a pack registers here is the folder
Hearth's own loaders and /models list, and ``folder_names_and_paths`` is a live view, not a copy.
"""
from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import MutableMapping, MutableSequence, MutableSet
from pathlib import Path
from typing import Any, Iterable, Iterator  # noqa: F401

from hearth.compat import binding
from hearth.compat.shims_support import module_getattr
from hearth.paths import LEGACY_NAMES, MODEL_EXTENSIONS, ModelFolder, save_image_path

log = logging.getLogger("folder_paths")

supported_pt_extensions: set[str] = set(MODEL_EXTENSIONS)
extension_mimetypes_cache: dict[str, str] = {"webp": "image"}


def _folders():
    return binding.app().folders


# --- folder_names_and_paths: a live view of Folders.model_folders ------------------------------------
class _PathList(MutableSequence):
    """A folder's search paths as ComfyUI's list of str; edits change the Folders entry."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = paths

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [str(p) for p in self._paths[index]]
        return str(self._paths[index])

    def __setitem__(self, index, value) -> None:
        if isinstance(index, slice):
            self._paths[index] = [Path(v) for v in value]
        else:
            self._paths[index] = Path(value)

    def __delitem__(self, index) -> None:
        del self._paths[index]

    def __len__(self) -> int:
        return len(self._paths)

    def insert(self, index: int, value) -> None:
        self._paths.insert(index, Path(value))

    def __contains__(self, value: object) -> bool:
        return isinstance(value, (str, os.PathLike)) and Path(value) in self._paths

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple, _PathList)) else NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))


class _Extensions(MutableSet):
    """A folder's extensions as ComfyUI's set; edits replace the Folders entry's frozenset."""

    def __init__(self, folder: ModelFolder) -> None:
        self._folder = folder

    def __contains__(self, value: object) -> bool:
        return value in self._folder.extensions

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._folder.extensions))

    def __len__(self) -> int:
        return len(self._folder.extensions)

    def add(self, value: str) -> None:
        self._folder.extensions = self._folder.extensions | {value}

    def discard(self, value: str) -> None:
        self._folder.extensions = self._folder.extensions - {value}

    def update(self, *values: Iterable[str]) -> None:
        for group in values:
            self._folder.extensions = self._folder.extensions | set(group)

    def append(self, value: str) -> None:  # some packs treat it as ComfyUI's list for "configs"
        self.add(value)

    def __repr__(self) -> str:
        return repr(set(self))


class _FolderNamesAndPaths(MutableMapping):
    """``{name: (paths, extensions)}`` backed by the bound App's Folders."""

    def _entry(self, name: str):
        folders = _folders()
        if name == "custom_nodes":
            return _PathList(folders.custom_nodes), set()
        folder = folders.model_folders.get(name)
        if folder is None:
            raise KeyError(name)
        return _PathList(folder.paths), _Extensions(folder)

    def __getitem__(self, name: str):
        return self._entry(name)

    def __setitem__(self, name: str, value) -> None:
        paths, extensions = value
        folders = _folders()
        if name == "custom_nodes":
            folders.custom_nodes[:] = [Path(p) for p in paths]
            return
        folders.model_folders[name] = ModelFolder(name, [Path(p) for p in paths], frozenset(extensions or ()))

    def __delitem__(self, name: str) -> None:
        del _folders().model_folders[name]

    def __iter__(self) -> Iterator[str]:
        names = list(_folders().model_folders)
        return iter(names + ["custom_nodes"])

    def __len__(self) -> int:
        return len(_folders().model_folders) + 1

    def __contains__(self, name: object) -> bool:
        return name == "custom_nodes" or name in _folders().model_folders

    def __repr__(self) -> str:
        return repr({k: (list(v[0]), set(v[1])) for k, v in self.items()})


folder_names_and_paths = _FolderNamesAndPaths()


class CacheHelper:
    """ComfyUI's filename-list cache switch. Hearth lists folders from disk each time; nothing to keep."""

    def __init__(self) -> None:
        self.active = False

    def get(self, key: str, default=None):
        return default

    def set(self, key: str, value) -> None:
        return None

    def clear(self) -> None:
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


cache_helper = CacheHelper()


# --- directories ---------------------------------------------------------------------------------
def map_legacy(folder_name: str) -> str:
    return LEGACY_NAMES.get(folder_name, folder_name)


def get_output_directory() -> str:
    return str(_folders().output)


def get_temp_directory() -> str:
    return str(_folders().temp)


def get_input_directory() -> str:
    return str(_folders().input)


def get_user_directory() -> str:
    return str(_folders().user)


def set_output_directory(output_dir: str) -> None:
    _folders().output = Path(output_dir)


def set_temp_directory(temp_dir: str) -> None:
    _folders().temp = Path(temp_dir)


def set_input_directory(input_dir: str) -> None:
    _folders().input = Path(input_dir)


def set_user_directory(user_dir: str) -> None:
    _folders().user = Path(user_dir)


def get_directory_by_type(type_name: str) -> str | None:
    directory = _folders().directory(type_name)
    return str(directory) if directory is not None else None


def annotated_filepath(name: str) -> tuple[str, str | None]:
    for kind in ("output", "input", "temp"):
        suffix = f"[{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)].rstrip(" "), get_directory_by_type(kind)
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base_dir = annotated_filepath(name)
    if base_dir is None:
        base_dir = default_dir if default_dir is not None else get_input_directory()
    return os.path.join(base_dir, name)


def exists_annotated_filepath(name: str) -> bool:
    return os.path.exists(get_annotated_filepath(name))


def get_input_subfolders() -> list[str]:
    root = _folders().input
    out: list[str] = []
    if not root.is_dir():
        return out
    for dirpath, _dirs, _files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)


# --- model folders -------------------------------------------------------------------------------
def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    _folders().add_model_path(folder_name, Path(full_folder_path), first=is_default)


def get_folder_paths(folder_name: str) -> list[str]:
    folders = _folders()
    if folder_name == "custom_nodes":
        return [str(p) for p in folders.custom_nodes]
    folder = folders.folder(folder_name)
    if folder is None:
        raise KeyError(folder_name)
    return [str(p) for p in folder.paths]


def recursive_search(directory: str, excluded_dir_names: list[str] | None = None
                     ) -> tuple[list[str], dict[str, float]]:
    """Files under ``directory`` (relative, '/'-separated) and the mtimes of the folders walked."""
    if not os.path.isdir(directory):
        return [], {}
    excluded = set(excluded_dir_names or [])
    files: list[str] = []
    dirs: dict[str, float] = {}
    try:
        dirs[directory] = os.path.getmtime(directory)
    except OSError:
        return [], {}
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        for f in filenames:
            files.append(os.path.relpath(os.path.join(dirpath, f), directory).replace(os.sep, "/"))
        for d in subdirs:
            path = os.path.join(dirpath, d)
            try:
                dirs[path] = os.path.getmtime(path)
            except OSError:
                continue
    return files, dirs


def filter_files_extensions(files: Iterable[str], extensions: Iterable[str]) -> list[str]:
    exts = {e.lower() for e in extensions}
    return sorted(f for f in files if not exts or os.path.splitext(f)[-1].lower() in exts)


def filter_files_content_types(files: list[str], content_types: list[str]) -> list[str]:
    out = []
    for name in files:
        extension = name.rsplit(".", 1)[-1].lower()
        kind = extension_mimetypes_cache.get(extension)
        if kind is None:
            mime, _ = mimetypes.guess_type(name, strict=False)
            if not mime:
                continue
            kind = mime.split("/")[0]
        if kind in content_types:
            out.append(name)
    return out


def get_full_path(folder_name: str, filename: str) -> str | None:
    path = _folders().full_path(folder_name, filename)
    return str(path) if path is not None else None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return path


def get_filename_list(folder_name: str) -> list[str]:
    folders = _folders()
    if folders.folder(folder_name) is None:
        raise KeyError(folder_name)  # as ComfyUI: an unknown folder is a KeyError
    return folders.filenames(folder_name)


def get_filename_list_(folder_name: str) -> tuple[list[str], dict[str, float], float]:
    import time

    return get_filename_list(folder_name), {}, time.perf_counter()


def cached_filename_list_(folder_name: str):
    return None  # nothing is cached: lists always come from the disk


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0
                        ) -> tuple[str, str, int, str, str]:
    full_folder, filename, counter, subfolder, prefix = save_image_path(filename_prefix, output_dir,
                                                                         image_width, image_height)
    os.makedirs(full_folder, exist_ok=True)
    return full_folder, filename, counter, subfolder, prefix


__getattr__ = module_getattr("folder_paths", {
    "base_path": lambda: str(_folders().base),
    "models_dir": lambda: str(_folders().models),
    "output_directory": lambda: str(_folders().output),
    "temp_directory": lambda: str(_folders().temp),
    "input_directory": lambda: str(_folders().input),
    "user_directory": lambda: str(_folders().user),
    # Hearth keeps no filename cache; a fresh dict keeps `filename_list_cache.clear()` / `.pop()` harmless.
    "filename_list_cache": lambda: {},
})

__all__: list[Any] = []
