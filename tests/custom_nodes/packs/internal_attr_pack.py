"""A pack that imports a name a provided ComfyUI module does not have."""
from comfy.model_management import hearth_test_not_a_real_function  # noqa: F401

NODE_CLASS_MAPPINGS = {}
