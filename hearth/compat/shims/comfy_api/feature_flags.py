"""ComfyUI's ``comfy_api.feature_flags``: what this server and a connected client support."""
from __future__ import annotations

from typing import Any

from hearth.compat import binding


def get_server_features() -> dict[str, Any]:
    return binding.app().feature_flags()


def get_connection_feature(sockets_metadata: Any, sid: str, feature_name: str, default: Any = False) -> Any:
    client = binding.app().hub.clients.get(sid)
    if client is None:
        return default
    if feature_name == "supports_preview_metadata":
        return client.supports_preview_metadata
    return default


def supports_feature(sockets_metadata: Any, sid: str, feature_name: str) -> bool:
    return get_connection_feature(sockets_metadata, sid, feature_name, False) is True
