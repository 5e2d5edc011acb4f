"""Which App the ComfyUI compatibility modules speak for.

``folder_paths``, ``server``, ``nodes`` … are process-wide module names, but
Hearth keeps no process-wide state of its own: every facade asks ``app()``
for the App it serves, at the moment it is used, and works on that App's real
objects (Folders, registry, hub, engine, model manager).

The answer comes from the node context of the calling thread or task (the App
binds it on the threads it owns and while it imports packs; ``install``
records the App there), so two Apps in one process each see their own. Threads
a pack starts itself carry no context; for them the App installed last
answers. That one fallback slot is the only binding kept outside an App, and
it lives here and nowhere else.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hearth.nodes import context as node_context

if TYPE_CHECKING:
    from hearth.app import App

SERVICE = "comfy_compat"  # key in NodeContext.services: the CompatState of that App


class CompatState:
    """What the compatibility layer keeps for one App (all of it lives on the App's node context)."""

    def __init__(self, app: "App") -> None:
        self.app = app
        # PromptServer.add_on_prompt_handler: functions that rewrite a /prompt body before it is queued.
        self.on_prompt_handlers: list = []
        # Packs' module directories (ComfyUI's nodes.LOADED_MODULE_DIRS), filled while packs load.
        self.loaded_module_dirs: dict[str, str] = {}
        # The PromptServer facade, made on first use.
        self.prompt_server: Any = None


class _Fallback:
    """The App for threads without a node context (the last one installed)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: CompatState | None = None


_fallback = _Fallback()


def install(app: "App") -> CompatState:
    state = CompatState(app)
    app.node_context.services[SERVICE] = state
    _fallback.state = state
    return state


def maybe_state() -> CompatState | None:
    ctx = node_context.maybe_current()
    if ctx is not None:
        state = ctx.services.get(SERVICE)
        if state is not None:
            return state
    return _fallback.state


def state() -> CompatState:
    found = maybe_state()
    if found is None:
        raise RuntimeError("Hearth's ComfyUI compatibility modules are not bound to a running server "
                           "(hearth.compat.install_compat(app) was not called)")
    return found


def app() -> "App":
    return state().app
