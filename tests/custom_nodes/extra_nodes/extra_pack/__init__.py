"""Loaded from a custom_nodes folder named in --extra-model-paths-config."""


class HTExtra:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "hearth_test"

    def run(self):
        return ("extra",)


NODE_CLASS_MAPPINGS = {"HT_Extra": HTExtra}
