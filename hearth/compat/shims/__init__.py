"""ComfyUI's module names, each a facade over Hearth (see hearth.compat.finder). Never imported under
these ``hearth.compat.shims.*`` names: the finder loads each file under its ComfyUI name."""
