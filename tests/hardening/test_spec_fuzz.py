"""Spec fuzzing: schemathesis generates requests from ComfyUI's OpenAPI spec and from Hearth's own
document (/openapi.json) and sends them to a real server.

Each operation gets a bounded number of generated cases (positive and negative data). Every
response must be free of server errors (5xx) and match the document's schema for its status; for
Hearth's own document the status code and content type must be documented too. Afterwards the
server must still answer and still run prompts (no crash, no hang, no dead worker).

ComfyUI's published spec disagrees with ComfyUI's own wire format in a few places (see ERRATA);
Hearth keeps the wire format clients depend on, so those schemas are corrected before fuzzing.
"""
from __future__ import annotations

import copy
import os
import time

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra (pip install -e .[test])")
requests = pytest.importorskip("requests")
yaml = pytest.importorskip("yaml")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,  # noqa: E402
                                               status_code_conformance)

from tests.hardening.conftest import COMFY_SPEC, figure, worker_alive  # noqa: E402

# Cases per operation and generation mode; HEARTH_FUZZ_EXAMPLES raises it for a longer local run.
EXAMPLES = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "25"))
REQUEST_TIMEOUT = 30


# --- ComfyUI spec errata ------------------------------------------------------------------------------
def _errata(spec: dict) -> list[str]:
    """Correct the schemas where ComfyUI's spec contradicts what ComfyUI itself sends (protocol.md)."""
    notes = []
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    # GET /history answers {prompt_id: entry}, not an array (protocol.md "GET /history?max_items=1").
    paths["/history"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "object", "additionalProperties": {"$ref": "#/components/schemas/HistoryItem"}}
    notes.append("GET /history: object keyed by prompt id, not an array")
    # GET /history/{id} answers {prompt_id: entry} too, and {} when unknown.
    paths["/history/{prompt_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "object", "additionalProperties": {"$ref": "#/components/schemas/HistoryItem"}}
    notes.append("GET /history/{prompt_id}: {prompt_id: entry}")
    # History entries carry "prompt" as the 5-element queue item, not the graph.
    schemas["HistoryItem"]["properties"]["prompt"] = {"type": "array"}
    notes.append("HistoryItem.prompt: [number, id, prompt, extra_data, outputs] array")
    # Queue items are 5-element arrays [number, prompt_id, prompt, extra_data, outputs_to_execute].
    for key in ("queue_running", "queue_pending"):
        schemas["QueueInfo"]["properties"][key]["items"] = {"type": "array"}
    notes.append("QueueInfo items: arrays, not objects")
    # V3 nodes send null for outputs without a tooltip.
    schemas["NodeInfo"]["properties"]["output_tooltips"]["items"] = {"type": "string", "nullable": True}
    notes.append("NodeInfo.output_tooltips items: nullable")
    # The CPU device has no index (torch.device('cpu').index is None).
    schemas["SystemStats"]["properties"]["devices"]["items"]["properties"]["index"]["nullable"] = True
    notes.append("SystemStats device index: nullable")
    # /internal/folder_paths answers every path of a folder (a list), not one string.
    paths["/internal/folder_paths"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    notes.append("GET /internal/folder_paths: lists of paths")
    return notes


# --- the runner ---------------------------------------------------------------------------------------
class FuzzRun:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.cases = 0
        self.server_errors = 0
        self.skipped = 0
        self.failures: dict[str, str] = {}
        self.per_operation: dict[str, int] = {}

    def run(self, schema, checks, include=lambda op: True) -> None:
        for result in schema.get_all_operations():
            operation = result.ok()
            if not include(operation):
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                self._fuzz(operation, mode, checks)

    def _fuzz(self, operation, mode, checks) -> None:
        label = operation.label
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception as exc:  # e.g. nothing negative can be generated for this operation
            self.per_operation.setdefault(label, 0)
            if mode == GenerationMode.POSITIVE:
                raise AssertionError(f"{label}: no strategy: {exc}") from exc
            return

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def one(case):
            try:
                response = case.call(base_url=self.base_url, session=self.session, timeout=REQUEST_TIMEOUT)
            except (requests.ConnectionError, requests.Timeout) as exc:
                # the server dropped the connection or hung: that is a finding, not a skip
                self.failures.setdefault(label, f"{type(exc).__name__}: {exc}")
                self.cases += 1
                return
            except Exception:  # requests refused to send it (a header with a newline, an invalid URL)
                self.skipped += 1
                return
            self.cases += 1
            self.per_operation[label] = self.per_operation.get(label, 0) + 1
            if response.status_code >= 500:
                self.server_errors += 1
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                self.failures.setdefault(label, str(exc)[:3000])

        try:
            one()
        except Unsatisfiable:
            # nothing invalid can be expressed for an operation without inputs
            if mode == GenerationMode.POSITIVE:
                raise


def _assert_clean(run: FuzzRun) -> None:
    assert not run.failures, "\n\n".join(f"== {label}\n{text}" for label, text in run.failures.items())
    assert run.server_errors == 0


def _still_serving(server, color: int) -> None:
    assert server.proc.poll() is None, server.log()[-3000:]
    assert server.get_json("/system_stats")
    worker_alive(server, color)


@pytest.fixture(scope="module")
def fuzz_server(module_server):
    return module_server("specfuzz")


def test_comfyui_spec_fuzz(fuzz_server):
    if not COMFY_SPEC.is_file():
        pytest.skip(f"ComfyUI's spec is not at {COMFY_SPEC} (it lives in the shared folder beside the checkout)")
    raw = yaml.safe_load(COMFY_SPEC.read_text())
    notes = _errata(raw)
    schema = schemathesis.openapi.from_dict(raw)
    run = FuzzRun(fuzz_server.url)
    start = time.time()
    run.run(schema, [not_a_server_error, response_schema_conformance])
    figure("spec fuzz (ComfyUI spec)", operations=len(run.per_operation), cases=run.cases,
           server_errors=run.server_errors, schema_violations=len(run.failures), client_side_skips=run.skipped,
           seconds=round(time.time() - start, 1), errata=len(notes))
    _assert_clean(run)
    assert len(run.per_operation) >= 25  # every operation of the spec ran
    _still_serving(fuzz_server, 0x010101)


def _documented(doc: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def test_openapi_document_covers_every_route(fuzz_server, tmp_path):
    """The static document names every route Hearth registers; the served one adds static mounts."""
    from hearth.app import App
    from hearth.config import config_from_args
    from hearth.server import openapi
    from hearth.server.http import create_web_app

    app = App(config_from_args(["--base-directory", str(tmp_path)]))
    try:
        web_app = create_web_app(app)
        registered = openapi.registered_routes(web_app)
        static_doc = openapi.build_document("test")
        missing = {r for r in registered - _documented(static_doc) if not r[1].endswith("{path}")}
        assert not missing, f"routes without an entry in hearth/server/openapi.py: {sorted(missing)}"
        assert not _documented(static_doc) - registered, "documented routes that do not exist"
    finally:
        app.store.close()
    served = fuzz_server.get_json("/openapi.json")
    assert served == fuzz_server.get_json("/api/openapi.json")
    assert served["openapi"].startswith("3.")
    assert {("GET", "/view"), ("POST", "/prompt"), ("GET", "/api/jobs"), ("GET", "/api/view")} <= _documented(served)
    ids = [op["operationId"] for ops in served["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_hearth_openapi_fuzz(fuzz_server):
    doc = fuzz_server.get_json("/openapi.json")
    schema = schemathesis.openapi.from_dict(copy.deepcopy(doc))

    def include(operation) -> bool:
        path = operation.path
        # /api/* mirrors run the same handlers (checked route by route in e2e); static files and the
        # websocket upgrade are not request/response operations
        if path.startswith("/api/") and not path.startswith("/api/jobs"):
            return False
        return not path.endswith("{path}") and path != "/ws"

    run = FuzzRun(fuzz_server.url)
    start = time.time()
    run.run(schema, [not_a_server_error, status_code_conformance, content_type_conformance,
                     response_schema_conformance], include)
    figure("spec fuzz (Hearth /openapi.json)", operations=len(run.per_operation), cases=run.cases,
           server_errors=run.server_errors, schema_violations=len(run.failures), client_side_skips=run.skipped,
           seconds=round(time.time() - start, 1))
    _assert_clean(run)
    assert len(run.per_operation) >= 45
    _still_serving(fuzz_server, 0x020202)
