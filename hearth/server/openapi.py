"""Hearth's own OpenAPI 3.0 document, served at ``/openapi.json``.

It describes what Hearth answers, status codes and bodies included, so that a client (or a fuzzer)
can check every response against it. Where ComfyUI's published spec and ComfyUI's wire format
disagree (``/history`` is an object keyed by prompt id, not an array; queue items are 5-element
arrays, not objects) this document follows the wire format, which is what clients depend on.

Every route is described once at its bare path; routes ComfyUI mirrors under ``/api`` are listed
again there (operation ids suffixed ``_api``). Routes that custom node packs add and static mounts
are appended when the document is served, so it always covers every route the server has.
"""
from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

# --- small builders ----------------------------------------------------------------------------------
JSON = "application/json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "Success") -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _text(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _empty(description: str = "Success") -> dict:
    return {"description": description}


def _any(description: str = "Success") -> dict:
    """A response whose media type depends on the file served."""
    return {"description": description, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}


def _param(name: str, where: str = "query", schema: dict | None = None, required: bool = False,
           description: str = "") -> dict:
    p = {"name": name, "in": where, "required": required or where == "path", "schema": schema or {"type": "string"}}
    if description:
        p["description"] = description
    return p


def _path(name: str, description: str = "") -> dict:
    return _param(name, "path", {"type": "string"}, True, description)


def _json_body(schema: dict, required: bool = False) -> dict:
    # The UI posts JSON as text/plain and scripts post it form-encoded; Hearth parses any of them as JSON.
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _op(op_id: str, tag: str, summary: str, responses: dict, parameters: list | None = None,
        body: dict | None = None, mirror: bool = True) -> dict:
    op: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    op["x-hearth-api-mirror"] = mirror
    return op


TOO_LARGE = _error("The request body is larger than --max-upload-size")
BAD_JSON = _error("The body is not valid JSON or has the wrong shape")

# --- schemas -----------------------------------------------------------------------------------------
_NODE_ERRORS = {"type": "object", "additionalProperties": {
    "type": "object",
    "properties": {
        "errors": {"type": "array", "items": _ref("ErrorObject")},
        "dependent_outputs": {"type": "array", "items": {"type": "string"}},
        "class_type": {"type": "string"},
    },
}}

SCHEMAS: dict[str, dict] = {
    "ErrorObject": {
        "type": "object", "required": ["type", "message", "details", "extra_info"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "string"},
                       "extra_info": {"type": "object"}},
    },
    "Error": {
        "type": "object", "required": ["error"],
        "description": "ComfyUI's error body: {error: {type, message, details, extra_info}, node_errors}",
        "properties": {"error": _ref("ErrorObject"), "node_errors": _NODE_ERRORS},
    },
    "SimpleError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "PromptRequest": {
        "type": "object", "required": ["prompt"],
        "properties": {
            "prompt": {"type": "object", "additionalProperties": {"type": "object"},
                       "description": "API-format workflow: node id -> {class_type, inputs}"},
            "prompt_id": {"type": "string", "format": "uuid", "description": "lowercase canonical UUID"},
            "client_id": {"type": "string"},
            "number": {"type": "number"},
            "front": {"type": "boolean"},
            "extra_data": {"type": "object"},
            "partial_execution_targets": {"type": "array", "items": {"type": "string"}},
        },
    },
    "PromptResponse": {
        "type": "object", "required": ["prompt_id", "number", "node_errors"],
        "properties": {"prompt_id": {"type": "string"}, "number": {"type": "number"},
                       "node_errors": {"type": "object"}},
    },
    "PromptInfo": {
        "type": "object", "required": ["exec_info"],
        "properties": {"exec_info": {"type": "object", "required": ["queue_remaining"],
                                     "properties": {"queue_remaining": {"type": "integer", "minimum": 0}}}},
    },
    "QueueItem": {
        "type": "array", "minItems": 5, "maxItems": 5,
        "description": "[number, prompt_id, prompt, extra_data, outputs_to_execute]",
    },
    "Queue": {
        "type": "object", "required": ["queue_running", "queue_pending"],
        "properties": {"queue_running": {"type": "array", "items": _ref("QueueItem")},
                       "queue_pending": {"type": "array", "items": _ref("QueueItem")}},
    },
    "HistoryEntry": {
        "type": "object", "required": ["prompt", "outputs", "status", "meta"],
        "properties": {
            "prompt": _ref("QueueItem"),
            "outputs": {"type": "object"},
            "status": {"type": "object", "required": ["status_str", "completed", "messages"],
                       "properties": {"status_str": {"type": "string", "enum": ["success", "error"]},
                                      "completed": {"type": "boolean"},
                                      "messages": {"type": "array", "items": {"type": "array"}}}},
            "meta": {"type": "object"},
        },
    },
    "History": {"type": "object", "additionalProperties": _ref("HistoryEntry"),
                "description": "prompt_id -> entry, oldest first; {} for an unknown id"},
    "NodeInfo": {
        "type": "object",
        "required": ["input", "output", "output_is_list", "output_name", "name", "display_name", "category",
                     "output_node"],
        "properties": {"input": {"type": "object"}, "input_order": {"type": "object"},
                       "output": {"type": "array"}, "output_is_list": {"type": "array", "items": {"type": "boolean"}},
                       "output_name": {"type": "array"}, "name": {"type": "string"},
                       "display_name": {"type": "string"}, "description": {"type": "string"},
                       "python_module": {"type": "string"}, "category": {"type": "string"},
                       "output_node": {"type": "boolean"}},
    },
    "ObjectInfo": {"type": "object", "additionalProperties": _ref("NodeInfo")},
    "SystemStats": {
        "type": "object", "required": ["system", "devices"],
        "properties": {
            "system": {"type": "object", "required": ["os", "ram_total", "ram_free", "comfyui_version",
                                                       "python_version", "embedded_python", "argv"],
                       "properties": {"os": {"type": "string"}, "ram_total": {"type": "number"},
                                      "ram_free": {"type": "number"}, "comfyui_version": {"type": "string"},
                                      "python_version": {"type": "string"}, "pytorch_version": {"type": "string"},
                                      "embedded_python": {"type": "boolean"},
                                      "argv": {"type": "array", "items": {"type": "string"}}}},
            "devices": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Features": {"type": "object", "required": ["supports_preview_metadata", "max_upload_size"],
                 "properties": {"supports_preview_metadata": {"type": "boolean"},
                                "max_upload_size": {"type": "integer"}}},
    "StringList": {"type": "array", "items": {"type": "string"}},
    "UploadResult": {"type": "object", "required": ["name", "subfolder", "type"],
                     "properties": {"name": {"type": "string"}, "subfolder": {"type": "string"},
                                    "type": {"type": "string", "enum": ["input", "output", "temp"]}}},
    "ModelFolder": {"type": "object", "required": ["name", "folders"],
                    "properties": {"name": {"type": "string"},
                                   "folders": {"type": "array", "items": {"type": "string"}}}},
    "ModelFile": {"type": "object", "required": ["name", "pathIndex"],
                  "properties": {"name": {"type": "string"}, "pathIndex": {"type": "integer"},
                                 "modified": {"type": "number"}, "created": {"type": "number"},
                                 "size": {"type": "integer"}}},
    "FolderPaths": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    "LogEntries": {
        "type": "object", "required": ["entries", "size"],
        "properties": {"entries": {"type": "array", "items": {
            "type": "object", "required": ["t", "m"], "properties": {"t": {"type": "string"}, "m": {"type": "string"}}}},
            "size": {"type": "object", "properties": {"cols": {"type": "integer"}, "rows": {"type": "integer"}}}},
    },
    "Job": {
        "type": "object",
        "required": ["id", "status", "priority", "create_time", "outputs_count", "previewable_outputs_count"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "in_progress", "completed", "failed", "cancelled"]},
            "priority": {"type": "number"}, "create_time": {"type": "integer", "nullable": True},
            "execution_start_time": {"type": "integer", "nullable": True},
            "execution_end_time": {"type": "integer", "nullable": True},
            "execution_error": {"type": "object", "nullable": True},
            "outputs_count": {"type": "integer"}, "previewable_outputs_count": {"type": "integer"},
            "preview_output": {"type": "object", "nullable": True},
            "workflow_id": {"type": "string", "nullable": True},
            "outputs": {"type": "object"}, "execution_status": {"type": "object", "nullable": True},
            "workflow": {"type": "object"},
        },
    },
    "JobList": {
        "type": "object", "required": ["jobs", "total", "pagination"],
        "properties": {"jobs": {"type": "array", "items": _ref("Job")}, "total": {"type": "integer"},
                       "pagination": {"type": "object", "required": ["offset", "limit", "total", "has_more"],
                                      "properties": {"offset": {"type": "integer"}, "limit": {"type": "integer"},
                                                     "total": {"type": "integer"},
                                                     "has_more": {"type": "boolean"}}}},
    },
    "JobCancel": {"type": "object", "required": ["id", "status", "cancelled"],
                  "properties": {"id": {"type": "string"}, "status": {"type": "string"},
                                 "cancelled": {"type": "string", "enum": ["pending", "running", "terminal"]}}},
    "UserFile": {"type": "object", "required": ["path"],
                 "properties": {"path": {"type": "string"}, "size": {"type": "integer"},
                                "modified": {"type": "number"}, "created": {"type": "number"}}},
    "UserdataEntry": {"type": "object", "required": ["name", "path", "type"],
                      "properties": {"name": {"type": "string"}, "path": {"type": "string"},
                                     "type": {"type": "string", "enum": ["file", "directory"]},
                                     "size": {"type": "integer"}, "modified": {"type": "number"}}},
    "Subgraph": {"type": "object", "required": ["source", "name", "path", "info"],
                 "properties": {"source": {"type": "string"}, "name": {"type": "string"}, "path": {"type": "string"},
                                "info": {"type": "object"}, "data": {"type": "string"}}},
    "Users": {"type": "object", "required": ["storage"],
              "properties": {"storage": {"type": "string"}, "migrated": {"type": "boolean"},
                             "users": {"type": "object", "additionalProperties": {"type": "string"}}}},
}

# --- operations --------------------------------------------------------------------------------------
_MAX_ITEMS = _param("max_items", schema={"type": "integer"}, description="page size")
_OFFSET = _param("offset", schema={"type": "integer"}, description="page start")
_IDS_BODY = _json_body({"type": "object", "properties": {
    "clear": {"type": "boolean"}, "delete": {"type": "array", "items": {"type": "string"}}}})
_FILE_KIND = {"type": "string", "enum": ["output", "input", "temp"]}
_UPLOAD_FORM = {"type": "object", "required": ["image"], "properties": {
    "image": {"type": "string", "format": "binary"}, "type": _FILE_KIND, "subfolder": {"type": "string"},
    "overwrite": {"type": "string"}}}
_USER_HEADER = _param("Comfy-User", "header", description="user id (only with --multi-user)")
_USER_TEXT_ERRORS = {"400": _text("Malformed name"), "403": _text("Outside the user's folder or unknown user"),
                     "404": _text("Not found")}


def _paths() -> dict[str, dict[str, dict]]:
    """Every route registered by Hearth's route modules, at its bare path."""
    p: dict[str, dict[str, dict]] = {}

    def add(method: str, path: str, op: dict) -> None:
        p.setdefault(path, {})[method.lower()] = op

    # core
    add("GET", "/ws", _op("websocket", "workflow", "Websocket: ComfyUI's status and execution messages",
                          {"101": _empty("Switching protocols"), "400": _text("Not a websocket upgrade")},
                          [_param("clientId")]))
    add("GET", "/prompt", _op("getPromptInfo", "workflow", "Queue size", {"200": _json(_ref("PromptInfo"))}))
    add("POST", "/prompt", _op("postPrompt", "workflow", "Validate and queue a prompt",
                               {"200": _json(_ref("PromptResponse")),
                                "400": _error("Invalid prompt (validation errors in node_errors)"),
                                "413": TOO_LARGE},
                               body=_json_body(_ref("PromptRequest"), required=True)))
    add("GET", "/queue", _op("getQueue", "queue", "Running and pending prompts (pending paged)",
                             {"200": _json(_ref("Queue")), "400": _error("Bad paging parameter")},
                             [_MAX_ITEMS, _OFFSET]))
    add("POST", "/queue", _op("postQueue", "queue", "Delete pending prompts or clear the queue",
                              {"200": _empty(), "400": BAD_JSON, "413": TOO_LARGE}, body=_IDS_BODY))
    add("GET", "/history", _op("getHistory", "queue", "Finished prompts, oldest first",
                               {"200": _json(_ref("History")), "400": _error("Bad paging parameter")},
                               [_MAX_ITEMS, _OFFSET]))
    add("GET", "/history/{prompt_id}", _op("getHistoryEntry", "queue", "One finished prompt ({} if unknown)",
                                           {"200": _json(_ref("History"))}, [_path("prompt_id")]))
    add("POST", "/history", _op("postHistory", "queue", "Delete history entries or clear it",
                                {"200": _empty(), "400": BAD_JSON, "413": TOO_LARGE}, body=_IDS_BODY))
    add("POST", "/interrupt", _op("interrupt", "workflow", "Interrupt the running prompt (or only the given one)",
                                  {"200": _empty(), "400": BAD_JSON, "413": TOO_LARGE},
                                  body=_json_body({"type": "object",
                                                   "properties": {"prompt_id": {"type": "string"}}})))
    add("POST", "/free", _op("free", "system", "Unload models and/or drop cached outputs",
                             {"200": _empty(), "400": BAD_JSON, "413": TOO_LARGE},
                             body=_json_body({"type": "object", "properties": {
                                 "unload_models": {"type": "boolean"}, "free_memory": {"type": "boolean"}}})))
    add("GET", "/object_info", _op("getObjectInfo", "node", "Every node class", {"200": _json(_ref("ObjectInfo"))}))
    add("GET", "/object_info/{node_class}", _op("getNodeInfo", "node", "One node class ({} if unknown)",
                                                {"200": _json(_ref("ObjectInfo"))}, [_path("node_class")]))
    add("GET", "/system_stats", _op("getSystemStats", "system", "System facts", {"200": _json(_ref("SystemStats"))}))
    add("GET", "/features", _op("getFeatures", "system", "Server feature flags", {"200": _json(_ref("Features"))}))
    add("GET", "/embeddings", _op("getEmbeddings", "model", "Embedding names", {"200": _json(_ref("StringList"))}))
    add("GET", "/extensions", _op("getExtensions", "system", "Frontend extension scripts",
                                  {"200": _json(_ref("StringList"))}))
    # jobs (under /api only, as ComfyUI)
    job_id = _path("job_id")
    add("GET", "/api/jobs", _op("listJobs", "queue", "Jobs: queue and history in one list",
                                {"200": _json(_ref("JobList")), "400": _error("Bad filter or paging parameter")},
                                [_param("status", description="comma-separated statuses"),
                                 _param("sort_by", schema={"type": "string",
                                                           "enum": ["create_time", "execution_duration"]}),
                                 _param("sort_order", schema={"type": "string", "enum": ["asc", "desc"]}),
                                 _param("limit", schema={"type": "integer", "minimum": 0}),
                                 _param("offset", schema={"type": "integer", "minimum": 0}),
                                 _param("workflow_id")], mirror=False))
    add("GET", "/api/jobs/{job_id}", _op("getJob", "queue", "One job",
                                         {"200": _json(_ref("Job")), "404": _error("Unknown job")}, [job_id],
                                         mirror=False))
    add("POST", "/api/jobs/{job_id}/cancel", _op("cancelJob", "queue", "Cancel a pending or running job",
                                                 {"200": _json(_ref("JobCancel")), "404": _error("Unknown job"),
                                                  "409": _json(_ref("JobCancel"), "Already finished")},
                                                 [job_id], mirror=False))
    # internal (no /api mirror)
    add("GET", "/internal/logs", _op("getLogs", "internal", "Recent server log as one string",
                                     {"200": _json({"type": "string"})}, mirror=False))
    add("GET", "/internal/logs/raw", _op("getRawLogs", "internal", "Recent server log entries",
                                         {"200": _json(_ref("LogEntries"))}, mirror=False))
    add("PATCH", "/internal/logs/subscribe", _op(
        "subscribeLogs", "internal", "Send new log entries to a websocket client",
        {"200": _empty(), "400": BAD_JSON, "413": TOO_LARGE},
        body=_json_body({"type": "object", "required": ["clientId"], "properties": {
            "clientId": {"type": "string"}, "enabled": {"type": "boolean"}}}, required=True), mirror=False))
    add("GET", "/internal/folder_paths", _op("getFolderPaths", "internal", "Model folders and their paths",
                                             {"200": _json(_ref("FolderPaths"))}, mirror=False))
    add("GET", "/internal/files/{directory_type}", _op(
        "getFiles", "internal", "Files in input/output/temp, newest first",
        {"200": _json(_ref("StringList")), "400": _json(_ref("SimpleError"), "Invalid directory type")},
        [_path("directory_type")], mirror=False))
    # files
    add("GET", "/view", _op("view", "image", "A file from input/output/temp, optionally re-encoded",
                            {"200": _any("The file"), "400": _error("Malformed name or options"),
                             "403": _error("The name resolves outside its folder"), "404": _error("No such file")},
                            [_param("filename"), _param("type", schema=_FILE_KIND), _param("subfolder"),
                             _param("preview", description="format;quality"),
                             _param("channel", schema={"type": "string", "enum": ["rgba", "rgb", "a"]})]))
    upload_responses = {"200": _json(_ref("UploadResult")), "400": _error("Malformed form, name or image"),
                        "403": _error("The target is outside its folder"), "404": _error("Original not found"),
                        "413": TOO_LARGE}
    add("POST", "/upload/image", _op("uploadImage", "image", "Upload a file to input/output/temp",
                                     {k: v for k, v in upload_responses.items() if k != "404"},
                                     body={"required": True, "content": {"multipart/form-data": {
                                         "schema": _UPLOAD_FORM}}}))
    mask_form = copy.deepcopy(_UPLOAD_FORM)
    mask_form["properties"]["original_ref"] = {"type": "string", "description": "JSON {filename, subfolder, type}"}
    add("POST", "/upload/mask", _op("uploadMask", "image", "Upload a mask applied to an existing image",
                                    upload_responses,
                                    body={"required": True, "content": {"multipart/form-data": {"schema": mask_form}}}))
    add("GET", "/view_metadata/{folder_name}", _op(
        "viewMetadata", "model", "The __metadata__ of a .safetensors model",
        {"200": _json({"type": "object"}), "400": _error("Malformed name"),
         "403": _error("Outside the folder"), "404": _error("No such model or no metadata")},
        [_path("folder_name"), _param("filename")]))
    add("GET", "/models", _op("getModelTypes", "model", "Model folder names", {"200": _json(_ref("StringList"))}))
    add("GET", "/models/{folder}", _op("getModels", "model", "Model files in a folder",
                                       {"200": _json(_ref("StringList")), "404": _error("Unknown folder")},
                                       [_path("folder")]))
    add("GET", "/experiment/models", _op("getModelFolders", "model", "Model folders with their paths",
                                         {"200": _json({"type": "array", "items": _ref("ModelFolder")})}))
    add("GET", "/experiment/models/{folder}", _op(
        "getModelFiles", "model", "Model files with sizes and times",
        {"200": _json({"type": "array", "items": _ref("ModelFile")}), "404": _error("Unknown folder")},
        [_path("folder")]))
    add("GET", "/experiment/models/preview/{folder}/{path_index}/{filename}", _op(
        "getModelPreview", "model", "A model's preview image as WEBP",
        {"200": {"description": "Preview", "content": {"image/webp": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}},
         "400": _error("Malformed index or name"), "403": _error("Outside the folder"),
         "404": _error("No such folder, path or preview")},
        [_path("folder"), _path("path_index"), _path("filename")]))
    add("GET", "/i18n", _op("getI18n", "system", "Custom nodes' translations", {"200": _json({"type": "object"})}))
    add("GET", "/workflow_templates", _op("getWorkflowTemplates", "system", "Custom nodes' example workflows",
                                          {"200": _json({"type": "object"})}))
    # users, userdata, settings
    add("GET", "/users", _op("getUsers", "user", "Users (multi-user) or migration state",
                             {"200": _json(_ref("Users"))}))
    add("POST", "/users", _op("createUser", "user", "Create a user",
                              {"200": _json({"type": "string"}, "The new user id"),
                               "400": {"description": "Bad or duplicate name, or malformed body", "content": {
                                   JSON: {"schema": {"oneOf": [_ref("SimpleError"), _ref("Error")]}}}},
                               "413": TOO_LARGE},
                              body=_json_body({"type": "object", "properties": {"username": {"type": "string"}}},
                                              required=True)))
    add("GET", "/userdata", _op("listUserdata", "user", "Files in a folder of the user's data",
                                {"200": _json({"type": "array"}), **_USER_TEXT_ERRORS},
                                [_param("dir"), _param("recurse"), _param("full_info"), _param("split"),
                                 _USER_HEADER]))
    add("GET", "/v2/userdata", _op("listUserdataV2", "user", "Files and folders of the user's data",
                                   {"200": _json({"type": "array", "items": _ref("UserdataEntry")}),
                                    **_USER_TEXT_ERRORS}, [_param("path"), _USER_HEADER]))
    file_param = _path("file", "URL-encoded path inside the user's folder")
    add("GET", "/userdata/{file}", _op("getUserdata", "user", "A user file",
                                       {"200": _any("The file"), **_USER_TEXT_ERRORS}, [file_param, _USER_HEADER]))
    add("POST", "/userdata/{file}", _op(
        "postUserdata", "user", "Write a user file",
        {"200": _json({"oneOf": [{"type": "string"}, _ref("UserFile")]}), **_USER_TEXT_ERRORS,
         "409": _text("Exists and overwrite=false"), "413": TOO_LARGE},
        [file_param, _param("overwrite"), _param("full_info"), _USER_HEADER],
        body={"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}))
    add("DELETE", "/userdata/{file}", _op("deleteUserdata", "user", "Delete a user file",
                                          {"204": _empty("Deleted"), **_USER_TEXT_ERRORS},
                                          [file_param, _USER_HEADER]))
    add("POST", "/userdata/{file}/move/{dest}", _op(
        "moveUserdata", "user", "Move a user file",
        {"200": _json({"oneOf": [{"type": "string"}, _ref("UserFile")]}), **_USER_TEXT_ERRORS,
         "409": _text("Destination exists and overwrite=false")},
        [file_param, _path("dest"), _param("overwrite"), _param("full_info"), _USER_HEADER]))
    settings_errors = {"401": _text("Unknown user"), "403": _text("Outside the user's folder")}
    add("GET", "/settings", _op("getSettings", "user", "All settings", {"200": _json({"type": "object"}),
                                                                        **settings_errors}, [_USER_HEADER]))
    add("GET", "/settings/{id}", _op("getSetting", "user", "One setting (null if unset)",
                                     {"200": _json({}), **settings_errors}, [_path("id"), _USER_HEADER]))
    add("POST", "/settings", _op("postSettings", "user", "Merge settings",
                                 {"200": _empty(), "400": {"description": "Not a JSON object"},
                                  **settings_errors, "413": TOO_LARGE},
                                 [_USER_HEADER], body=_json_body({"type": "object"}, required=True)))
    add("POST", "/settings/{id}", _op("postSetting", "user", "Set one setting",
                                      {"200": _empty(), "400": {"description": "Not JSON"}, **settings_errors,
                                       "413": TOO_LARGE},
                                      [_path("id"), _USER_HEADER], body=_json_body({}, required=True)))
    # subgraph blueprints shipped by custom node packs
    add("GET", "/global_subgraphs", _op("listSubgraphs", "node", "Subgraph blueprints of custom node packs",
                                        {"200": _json({"type": "object", "additionalProperties": _ref("Subgraph")})}))
    add("GET", "/global_subgraphs/{id}", _op("getSubgraph", "node", "One subgraph blueprint with its JSON",
                                             {"200": _json(_ref("Subgraph")), "404": _error("No such subgraph")},
                                             [_path("id")]))
    # frontend and this document
    add("GET", "/", _op("index", "frontend", "The web UI", {"200": _any("index.html")}, mirror=False))
    add("GET", "/openapi.json", _op("openapi", "system", "This document", {"200": _json({"type": "object"})}))
    return p


def build_document(version: str) -> dict:
    """The document for Hearth's own routes (bare paths and their /api mirrors)."""
    paths = _paths()
    mirrored: dict[str, dict[str, dict]] = {}
    for path, ops in paths.items():
        for method, op in ops.items():
            if op.get("x-hearth-api-mirror"):
                twin = copy.deepcopy(op)
                twin["operationId"] = op["operationId"] + "_api"
                twin["x-hearth-mirror-of"] = path
                mirrored.setdefault("/api" + path, {})[method] = twin
    paths.update(mirrored)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Hearth", "version": version,
                 "description": "A ComfyUI-compatible server. Routes answer at their path and (except "
                                "/internal/*, /api/jobs*, / and static files) also under /api. Off loopback every "
                                "request needs the API token (Authorization: Bearer, or ?token=)."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": copy.deepcopy(SCHEMAS),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "query": {"type": "apiKey", "in": "query", "name": "token"}}},
    }


def _route_template(resource: web.AbstractResource) -> str:
    """The OpenAPI path of an aiohttp resource; static mounts become ``<prefix>/{path}``."""
    if isinstance(resource, web.StaticResource):
        return resource.canonical.rstrip("/") + "/{path}"
    return resource.canonical


def registered_routes(web_app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) for every route of the app; HEAD twins of GET routes left out."""
    out: set[tuple[str, str]] = set()
    for route in web_app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        out.add((route.method.upper(), _route_template(route.resource)))
    return out


def document_for(web_app: web.Application, version: str) -> dict:
    """The document plus every route the app has that it does not describe (custom nodes, static mounts)."""
    doc = build_document(version)
    paths = doc["paths"]
    for method, path in sorted(registered_routes(web_app)):
        if method == "*":
            methods = ["get", "post", "put", "patch", "delete"]
        else:
            methods = [method.lower()]
        for m in methods:
            if m in paths.get(path, {}):
                continue
            static = path.endswith("/{path}")
            params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _template_names(path)]
            op = {"operationId": f"{m}_{path}", "tags": ["static" if static else "custom"],
                  "summary": "Static files" if static else "Registered by a custom node pack",
                  "responses": {"default": {"description": "Defined by the handler"}}}
            if params:
                op["parameters"] = params
            paths.setdefault(path, {})[m] = op
    return doc


def _template_names(path: str) -> list[str]:
    names = []
    for piece in path.split("/"):
        if piece.startswith("{") and piece.endswith("}"):
            names.append(piece[1:-1].split(":", 1)[0])
    return names


async def serve(request: web.Request) -> web.Response:
    from hearth import __version__

    return web.json_response(document_for(request.app, __version__))
