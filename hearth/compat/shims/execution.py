"""ComfyUI's ``execution`` module. Hearth's engine (``hearth.engine``) replaces ComfyUI's executor, so
its classes are named here only so that packs that refer to them still import; using them fails
loudly, naming what is missing."""
from hearth.compat.shims_support import NotProvidedError, module_getattr


class PromptExecutor:
    """ComfyUI's executor. Hearth runs prompts with its own engine; this class cannot be used."""

    def __init__(self, *args, **kwargs):
        raise NotProvidedError("execution.PromptExecutor is not provided: Hearth runs prompts with its own engine")

    def handle_execution_error(self, *args, **kwargs):
        raise NotProvidedError("execution.PromptExecutor.handle_execution_error is not provided by Hearth")

    def execute(self, *args, **kwargs):
        raise NotProvidedError("execution.PromptExecutor.execute is not provided by Hearth")


def validate_prompt(*args, **kwargs):
    raise NotProvidedError("execution.validate_prompt is not provided: POST the prompt to /prompt instead")


__getattr__ = module_getattr("execution")
