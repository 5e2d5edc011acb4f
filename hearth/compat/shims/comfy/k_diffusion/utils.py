"""ComfyUI's ``comfy.k_diffusion.utils``, as far as packs use it outside sampling."""
from __future__ import annotations

from pathlib import Path

from hearth.compat.shims_support import module_getattr


class FolderOfImages:
    """The images under a folder (recursively), as a map-style dataset of 1-tuples of RGB PIL images."""

    IMG_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}

    def __init__(self, root, transform=None):
        self.root = Path(root)
        self.transform = transform
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in self.IMG_EXTENSIONS)

    def __repr__(self) -> str:
        return f'FolderOfImages(root="{self.root}", len: {len(self)})'

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        from PIL import Image

        with open(self.paths[index], "rb") as f:
            image = Image.open(f).convert("RGB")
        return (self.transform(image) if self.transform is not None else image),


__getattr__ = module_getattr("comfy.k_diffusion.utils")
