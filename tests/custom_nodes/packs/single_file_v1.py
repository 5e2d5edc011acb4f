"""A single-file pack: plain V1 nodes, display names, and a name a built-in already owns."""


class HTConcat:
    """Concatenate two strings."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("STRING", {"default": ""}), "b": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "hearth_test"

    def run(self, a, b):
        return (a + b,)


class NotKSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ()
    FUNCTION = "run"

    def run(self):
        return ()


NODE_CLASS_MAPPINGS = {"HT_Concat": HTConcat, "KSampler": NotKSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"HT_Concat": "HT Concat (single file)"}
