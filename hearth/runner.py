"""`hearth run WORKFLOW.json`: execute an API-format workflow without a server."""
from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Sequence, TextIO

from hearth.config import FlagError, config_from_args


class TerminalProgress:
    """One line per node: a bar while it reports progress, then its time."""

    def __init__(self, prompt: dict, out: TextIO):
        self.prompt = prompt
        self.out = out
        self.tty = out.isatty()
        self.node: str | None = None
        self.started = 0.0

    def _label(self, node: str) -> str:
        spec = self.prompt.get(node, {})
        cls = spec.get("class_type", "?") if isinstance(spec, dict) else "?"
        return f"#{node} {cls}"

    def _finish_line(self) -> None:
        if self.node is not None:
            elapsed = time.perf_counter() - self.started
            self.out.write(("\r" if self.tty else "") + f"{self._label(self.node)}: done in {elapsed:.2f}s\n")
            self.out.flush()
            self.node = None

    def __call__(self, event) -> None:
        from hearth.engine import events as ev

        if isinstance(event, ev.Executing) and event.node is not None:
            self._finish_line()
            self.node = event.node
            self.started = time.perf_counter()
            if not self.tty:
                self.out.write(f"{self._label(event.node)}: running\n")
        elif isinstance(event, ev.Progress) and self.tty:
            width = 30
            frac = 0.0 if not event.max else min(max(event.value / event.max, 0.0), 1.0)
            bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
            self.out.write(f"\r{self._label(event.node)}: [{bar}] {event.value}/{event.max}")
            self.out.flush()
        elif isinstance(event, ev.ExecutionCached) and event.nodes:
            self.out.write(f"cached: {', '.join(event.nodes)}\n")
        elif isinstance(event, (ev.ExecutionSuccess, ev.ExecutionError, ev.ExecutionInterrupted)):
            self._finish_line()


def run_main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        err.write("usage: hearth run WORKFLOW.json [--output-directory D] [server flags]\n")
        return 2
    workflow_path, flags = Path(argv[0]), argv[1:]
    try:
        cfg = config_from_args(flags)
    except FlagError as exc:
        err.write(f"hearth run: error: {exc}\n")
        return 2
    try:
        prompt = json.loads(workflow_path.read_text(encoding="utf-8"))
    except OSError as exc:
        err.write(f"hearth run: cannot read {workflow_path}: {exc.strerror or exc}\n")
        return 2
    except ValueError as exc:
        err.write(f"hearth run: {workflow_path} is not valid JSON: {exc}\n")
        return 2
    if isinstance(prompt, dict) and "prompt" in prompt and isinstance(prompt["prompt"], dict):
        prompt = prompt["prompt"]  # a saved POST /prompt body
    if isinstance(prompt, dict) and "nodes" in prompt and "links" in prompt:
        err.write("hearth run: this is a UI-format workflow; export it with 'Export (API)' and run that file\n")
        return 2

    from hearth.engine import CachePolicy, Engine, Interrupt
    from hearth.engine import events as ev
    from hearth.nodes import context as node_context
    from hearth.nodes.builtin import register_builtin_nodes
    from hearth.nodes.registry import NodeRegistry
    from hearth.paths import Folders

    folders = Folders.from_config(cfg)
    folders.create()
    registry = NodeRegistry()
    register_builtin_nodes(registry)
    node_context.bind(node_context.NodeContext(config=cfg, folders=folders, registry=registry))
    engine = Engine(registry, CachePolicy(kind="none"))
    result = engine.validate(prompt)
    if not result.ok:
        err.write(f"hearth run: the workflow is invalid: {result.error.get('message')}"
                  f" {result.error.get('details') or ''}\n".replace("  ", " "))
        for node_id, node_err in (result.node_errors or {}).items():
            for e in node_err.get("errors", []):
                err.write(f"  node #{node_id} ({node_err.get('class_type')}): {e.get('message')}: "
                          f"{e.get('details')}\n")
        return 1
    progress = TerminalProgress(prompt, out)
    failure: list = []

    def emit(event) -> None:
        progress(event)
        if isinstance(event, (ev.ExecutionError, ev.ExecutionInterrupted)):
            failure.append(event)

    outcome = engine.execute(str(uuid.uuid4()), prompt, {}, result.outputs, emit, Interrupt())
    for node_id, ui in outcome.outputs.items():
        for key, items in ui.items():
            if isinstance(items, list):
                for item in items:
                    if isinstance(item, dict) and "filename" in item:
                        folder = folders.directory(item.get("type", "output")) or folders.output
                        path = Path(folder) / item.get("subfolder", "") / item["filename"]
                        out.write(f"#{node_id} {key}: {path}\n")
    if outcome.status != "success":
        if failure and isinstance(failure[0], ev.ExecutionError):
            e = failure[0]
            err.write(f"hearth run: node #{e.node_id} ({e.node_type}) failed: {e.exception_type}: "
                      f"{e.exception_message}\n")
        else:
            err.write("hearth run: interrupted\n")
        return 1
    return 0
