"""Folders: the model folder registry (ComfyUI's names and extensions), the input/output/temp/user
directories, extra model paths from ComfyUI's YAML, and safe resolution of user-supplied names.

Every file name that arrives from a request or a workflow goes through ``safe_join``: the result is
always inside its root after symlinks are resolved, or a ``PathError`` is raised.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

MODEL_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})

# name -> (subfolders of models/, extensions). The order is ComfyUI's.
MODEL_FOLDERS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "checkpoints": (("checkpoints",), MODEL_EXTENSIONS),
    "configs": (("configs",), frozenset({".yaml"})),
    "loras": (("loras",), MODEL_EXTENSIONS),
    "vae": (("vae",), MODEL_EXTENSIONS),
    "text_encoders": (("text_encoders", "clip"), MODEL_EXTENSIONS),
    "diffusion_models": (("unet", "diffusion_models"), MODEL_EXTENSIONS),
    "clip_vision": (("clip_vision",), MODEL_EXTENSIONS),
    "style_models": (("style_models",), MODEL_EXTENSIONS),
    "embeddings": (("embeddings",), MODEL_EXTENSIONS),
    "diffusers": (("diffusers",), frozenset({"folder"})),
    "vae_approx": (("vae_approx",), MODEL_EXTENSIONS),
    "controlnet": (("controlnet", "t2i_adapter"), MODEL_EXTENSIONS),
    "gligen": (("gligen",), MODEL_EXTENSIONS),
    "upscale_models": (("upscale_models",), MODEL_EXTENSIONS),
    "hypernetworks": (("hypernetworks",), MODEL_EXTENSIONS),
    "photomaker": (("photomaker",), MODEL_EXTENSIONS),
    "classifiers": (("classifiers",), frozenset({""})),
    "model_patches": (("model_patches",), MODEL_EXTENSIONS),
    "audio_encoders": (("audio_encoders",), MODEL_EXTENSIONS),
}
LEGACY_NAMES = {"clip": "text_encoders", "unet": "diffusion_models"}
DIRECTORY_TYPES = ("output", "input", "temp")

_DRIVE = re.compile(r"^[A-Za-z]:")


class PathError(ValueError):
    """A user-supplied name that would leave its folder or is malformed. ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def check_name(part: str, *, allow_slash: bool = True) -> str:
    """Reject names that could address anything outside a folder, before touching the disk."""
    if not isinstance(part, str):
        raise PathError("file name must be a string")
    if "\x00" in part:
        raise PathError("file name contains a NUL byte")
    if "\\" in part:
        raise PathError("file name contains a backslash")
    if _DRIVE.match(part):
        raise PathError("file name names a drive")
    if part.startswith("/"):
        raise PathError("file name is absolute")
    if part == "~" or re.match(r"~[^/]*/", part):
        raise PathError("file name starts with a home-directory reference")
    if any(ord(c) < 32 or ord(c) == 127 for c in part):
        raise PathError("file name contains a control character")
    if len(part) > 4096:
        raise PathError("file name is too long")
    pieces = part.split("/")
    if not allow_slash and len(pieces) > 1:
        raise PathError("file name contains a slash")
    if any(p == ".." for p in pieces):
        raise PathError("file name contains '..'")
    if any(len(p.encode("utf-8", "surrogatepass")) > 255 for p in pieces):
        raise PathError("file name is too long")
    return part


def safe_join(root: Path | str, *parts: str, status: int = 403) -> Path:
    """Join user-supplied parts under root; the realpath must stay inside root's realpath."""
    root_real = os.path.realpath(root)
    for part in parts:
        if part:
            check_name(part)
    joined = os.path.join(root_real, *[p for p in parts if p])
    real = os.path.realpath(joined)
    if real != root_real and not real.startswith(root_real.rstrip(os.sep) + os.sep):
        raise PathError("path is outside its folder", status)
    return Path(real)


def is_inside(root: Path | str, path: Path | str) -> bool:
    root_real = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


@dataclass
class ModelFolder:
    name: str
    paths: list[Path]
    extensions: frozenset[str]


@dataclass
class Folders:
    base: Path
    models: Path
    input: Path
    output: Path
    temp: Path
    user: Path
    custom_nodes: list[Path]
    model_folders: dict[str, ModelFolder] = field(default_factory=dict)
    save_counters: "SaveCounters" = field(default_factory=lambda: SaveCounters())

    @classmethod
    def from_config(cls, cfg) -> "Folders":
        base = Path(cfg.base_directory)
        folders = cls(
            base=base,
            models=base / "models",
            input=Path(cfg.input_directory or base / "input"),
            output=Path(cfg.output_directory or base / "output"),
            temp=Path(cfg.temp_directory or base / "temp"),
            user=Path(cfg.user_directory or base / "user"),
            custom_nodes=[base / "custom_nodes"],
        )
        for name, (subdirs, exts) in MODEL_FOLDERS.items():
            folders.model_folders[name] = ModelFolder(name, [folders.models / s for s in subdirs], exts)
        for yaml_path in cfg.extra_model_paths:
            folders.load_extra_paths(Path(yaml_path))
        return folders

    def clear_temp(self) -> None:
        """Empty temp/ (previews of the last run), as ComfyUI does at start-up."""
        import shutil

        if self.temp.is_dir():
            for entry in self.temp.iterdir():
                try:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                except OSError as exc:
                    log.warning("could not remove %s from the temp folder: %s", entry, exc)

    def create(self) -> None:
        """Create the folders a fresh install needs (ComfyUI crashes on a missing custom_nodes/; we don't)."""
        for d in (self.input, self.output, self.temp, self.user, self.custom_nodes[0]):
            d.mkdir(parents=True, exist_ok=True)
        for folder in self.model_folders.values():
            if folder.paths and is_inside(self.models, folder.paths[0]):
                folder.paths[0].mkdir(parents=True, exist_ok=True)

    # --- model folders -------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        return LEGACY_NAMES.get(name, name)

    def folder(self, name: str) -> ModelFolder | None:
        return self.model_folders.get(self.canonical(name))

    def add_model_path(self, name: str, path: Path, first: bool = False) -> None:
        name = self.canonical(name)
        if name == "custom_nodes":
            target = self.custom_nodes
            if path not in target:
                target.insert(0, path) if first else target.append(path)
            return
        folder = self.model_folders.get(name)
        if folder is None:  # a folder name only the YAML knows: list every file in it
            folder = self.model_folders[name] = ModelFolder(name, [], frozenset())
        if path in folder.paths:
            if not first:
                return  # already known: keep its place
            folder.paths.remove(path)
        folder.paths.insert(0, path) if first else folder.paths.append(path)

    def load_extra_paths(self, yaml_path: Path) -> None:
        """ComfyUI's extra_model_paths.yaml: sections with base_path, is_default, and per-folder paths."""
        import yaml  # only needed when the flag is used

        try:
            data = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read extra model paths file {yaml_path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"extra model paths file {yaml_path} is not a mapping")
        yaml_dir = yaml_path.resolve().parent
        for section, conf in data.items():
            if not isinstance(conf, dict):
                continue
            conf = dict(conf)
            base_path = conf.pop("base_path", None)
            if base_path:
                base_path = Path(os.path.expandvars(os.path.expanduser(str(base_path))))
                if not base_path.is_absolute():
                    base_path = yaml_dir / base_path
            is_default = bool(conf.pop("is_default", False))
            for name, value in conf.items():
                if value is None:
                    continue
                if isinstance(value, list):
                    lines = [str(v) for v in value]
                elif isinstance(value, (str, int, float)):
                    lines = str(value).split("\n")
                else:
                    raise ValueError(f"extra model paths file {yaml_path}: {section}.{name} must be a path or "
                                     "a list of paths")
                for line in lines:
                    line = line.strip()
                    if not line:
                        continue
                    p = Path(os.path.expandvars(os.path.expanduser(line)))
                    if base_path is not None and not p.is_absolute():
                        p = base_path / p
                    elif not p.is_absolute():
                        p = yaml_dir / p
                    log.info("adding extra search path %s %s", name, p)
                    self.add_model_path(name, Path(os.path.normpath(p)), first=is_default)

    def filenames(self, name: str) -> list[str]:
        """Model files (relative names with '/' separators) in a folder, sorted; reflects the disk now."""
        folder = self.folder(name)
        if folder is None:
            return []
        found: dict[str, None] = {}
        for root in folder.paths:
            for rel in _walk_files(root, folder.extensions):
                found.setdefault(rel, None)
        return sorted(found)

    def full_path(self, name: str, filename: str) -> Path | None:
        """The file a model-list value names, or None. Never leaves the folder."""
        folder = self.folder(name)
        if folder is None:
            return None
        try:
            check_name(filename)
        except PathError:
            return None
        # Links that leave a model folder are not followed (models on another disk are added with
        # --extra-model-paths-config), so no name can reach a file outside the configured folders.
        for root in folder.paths:
            try:
                path = safe_join(root, filename)
            except PathError:
                continue
            if path.is_file() or (path.is_dir() and "folder" in folder.extensions):
                return path
        return None

    def listing_signature(self) -> tuple:
        """Modification times of every folder node lists are built from (model folders, input,
        output): equal signatures mean every file list is unchanged, so cached lists stay valid."""
        roots = [p for folder in self.model_folders.values() for p in folder.paths]
        roots += [self.input, self.output]
        sig = []
        seen: set[tuple[int, int]] = set()
        for root in roots:
            for dirpath, dirnames, _ in os.walk(root, followlinks=True):
                try:
                    st = os.stat(dirpath)
                except OSError:
                    dirnames.clear()
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    dirnames.clear()
                    continue
                seen.add((st.st_dev, st.st_ino))
                sig.append((dirpath, st.st_mtime_ns))
        return tuple(sig)

    # --- input / output / temp -----------------------------------------------------------------
    def directory(self, kind: str) -> Path | None:
        return {"output": self.output, "input": self.input, "temp": self.temp}.get(kind)

    def annotated(self, name: str) -> tuple[str, Path]:
        """'file.png [output]' -> ('file.png', output dir); plain names are in input/."""
        for kind in DIRECTORY_TYPES:
            suffix = f" [{kind}]"
            if name.endswith(suffix):
                return name[: -len(suffix)], self.directory(kind)  # type: ignore[return-value]
        return name, self.input


def _extension_matches(name: str, exts: set[str]) -> bool:
    if not exts:
        return True  # no list: every file
    ext = os.path.splitext(name)[1].lower()
    return ext in exts or ("" in exts and ext == "")


def _walk_files(root: Path, extensions: Iterable[str]) -> list[str]:
    exts = set(extensions)
    if not root.is_dir():
        return []
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    root_real = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames.clear()
            continue
        # a link loop (been here already) or a link leaving the folder: list only what full_path loads
        if (st.st_dev, st.st_ino) in seen or not is_inside(root_real, dirpath):
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        if "folder" in exts:
            # diffusers-style entries are folders themselves
            for d in dirnames:
                if is_inside(root_real, os.path.join(dirpath, d)):
                    out.append(d if rel_dir == "." else f"{rel_dir}/{d}".replace(os.sep, "/"))
            dirnames.clear()
            continue
        for f in filenames:
            if f.startswith(".") or not is_inside(root_real, os.path.join(dirpath, f)):
                continue
            if _extension_matches(f, exts):
                rel = f if rel_dir == "." else os.path.join(rel_dir, f)
                out.append(rel.replace(os.sep, "/"))
    return out


# --- saving ----------------------------------------------------------------------------------------
def expand_prefix_vars(prefix: str, width: int, height: int) -> str:
    """The substitutions ComfyUI's server applies to filename prefixes (%width%, %year%, …)."""
    import datetime

    if "%" not in prefix:
        return prefix
    now = datetime.datetime.now()
    for key, value in (("%width%", str(width)), ("%height%", str(height)), ("%year%", str(now.year)),
                       ("%month%", f"{now.month:02}"), ("%day%", f"{now.day:02}"), ("%hour%", f"{now.hour:02}"),
                       ("%minute%", f"{now.minute:02}"), ("%second%", f"{now.second:02}")):
        prefix = prefix.replace(key, value)
    return prefix


class SaveOutsideFolder(ValueError):
    pass


class SaveCounters:
    """The next file counter per (folder, name), remembered after our own saves and trusted while the
    folder's mtime is the one our last save left: saving then needs no scan of a folder that may hold
    thousands of previews."""

    def __init__(self, capacity: int = 1024):
        self._entries: dict[tuple[str, str], tuple[int, int]] = {}
        self._capacity = capacity

    def lookup(self, folder: str, filename: str) -> int | None:
        entry = self._entries.get((folder, filename))
        if entry is None:
            return None
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return None
        return entry[1] if mtime == entry[0] else None

    def saved(self, folder: str, filename: str, next_counter: int) -> None:
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return
        if len(self._entries) >= self._capacity:
            self._entries.clear()
        self._entries[(folder, filename)] = (mtime, next_counter)


def save_image_path(prefix: str, output_dir: Path | str, width: int = 0, height: int = 0,
                    counters: SaveCounters | None = None) -> tuple[str, str, int, str, str]:
    """(full_folder, filename, counter, subfolder, prefix) for a save under output_dir.

    Counter = one past the highest ``<filename>_NNNNN_`` already in the folder. The folder must stay
    inside output_dir after resolving '..' and symlinks.
    """
    if not isinstance(prefix, str) or "\x00" in prefix:
        raise SaveOutsideFolder("filename_prefix must be a string without NUL bytes")
    prefix = expand_prefix_vars(prefix, width, height)
    if "\\" in prefix or _DRIVE.match(prefix) or prefix.startswith("/"):
        raise SaveOutsideFolder("Saving outside the output folder is not allowed: "
                                "filename_prefix must be a relative path")
    subfolder = os.path.dirname(os.path.normpath(prefix)) if "/" in prefix else ""
    filename = os.path.basename(os.path.normpath(prefix)) if prefix else ""
    output_real = os.path.realpath(output_dir)
    full_folder = os.path.realpath(os.path.join(output_real, subfolder)) if subfolder else output_real
    if full_folder != output_real and not full_folder.startswith(output_real + os.sep):
        raise SaveOutsideFolder("Saving outside the output folder is not allowed "
                                f"(filename_prefix {prefix[:200]!r})")
    if len(filename.encode()) > 200:
        raise SaveOutsideFolder("filename_prefix is too long")
    rel_sub = os.path.relpath(full_folder, output_real)
    subfolder = "" if rel_sub == "." else rel_sub.replace(os.sep, "/")
    known = counters.lookup(full_folder, filename) if counters is not None else None
    if known is not None:
        return full_folder, filename, known, subfolder, prefix
    counter = 1
    head = filename + "_"
    try:
        pattern = re.compile(re.escape(filename) + r"_(\d+)_?")
        with os.scandir(full_folder) as entries:
            for entry in entries:
                if entry.name.startswith(head):  # cheap test first: folders fill up with other prefixes
                    m = pattern.match(entry.name)
                    if m:
                        counter = max(counter, int(m.group(1)) + 1)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return full_folder, filename, counter, subfolder, prefix
