"""The Engine: validates prompts and executes them node by node, as ComfyUI does.

One prompt runs at a time, on the caller's (worker) thread, inside a private
asyncio loop so that async node functions of independent nodes overlap. Every
message goes out through ``emit`` in ComfyUI's order (protocol.md §5):

    execution_start, execution_cached,
    per node: progress_state(running), executing, [executed], progress_state(finished)
    execution_success | execution_error | execution_interrupted

Cached output nodes still send ``executed`` (their cached ui) and one
``progress_state``; nodes waiting on lazy inputs, async work or an expansion
leave and re-enter the run exactly where ComfyUI's would.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from hearth.engine.cache import CachePolicy, OutputCache, Signatures, is_changed_token
from hearth.engine.events import (Emit, Event, Executed, ExecutionBlocked, ExecutionCached, ExecutionError,
                                  ExecutionInterrupted, ExecutionStart, ExecutionSuccess, Executing)
from hearth.engine.graph import (DuplicateNodeError, DynamicPrompt, ExecutionBlocker, GraphBuilder,
                                 NodeNotFoundError, is_link)
from hearth.engine.nodeclass import ClassInfo, ClassTable, full_type_name, summarize_value
from hearth.engine.progress import (Interrupt, NodeExecution, ProcessingInterrupted, ProgressTracker, RunState,
                                    bind, unbind)
from hearth.engine.scheduler import ExecutionList
from hearth.engine.validate import ValidationResult, call_inputs, constant_inputs, hidden_value, validate_prompt

log = logging.getLogger(__name__)

SUCCESS, FAILURE, PENDING = "success", "failure", "pending"

OOM_TIPS = ("This error means the GPU ran out of memory.\n\nTIPS: if the workflow worked before, "
            "check that the batch size or the image size was not raised by accident.")


@dataclass
class ExecutionOutcome:
    status: str                                   # "success" | "error" | "interrupted"
    outputs: dict[str, Any] = field(default_factory=dict)   # history "outputs": node id -> ui
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: Event | None = None                    # the ExecutionError / ExecutionInterrupted sent
    executed: list[str] = field(default_factory=list)       # nodes that ran (not cached), in order
    cached: list[str] = field(default_factory=list)         # the execution_cached list


@dataclass
class _Failure:
    node_id: str                       # the prompt (real) node to blame
    interrupted: bool = False
    message: str = ""
    exception_type: str = ""
    traceback: list[str] = field(default_factory=list)
    current_inputs: Any = field(default_factory=dict)


class Engine:
    """Validates and executes prompts; keeps node outputs cached between prompts."""

    def __init__(self, registry: Any, policy: CachePolicy | None = None) -> None:
        self.registry = registry
        self.policy = policy or CachePolicy()
        self._cache = OutputCache(self.policy)
        self._run_lock = threading.Lock()
        self._clear_requested = False
        # The node whose code the running prompt entered last; for compatibility layers that
        # need it outside the node's own context (threads a node starts, ComfyUI's last_node_id).
        self.running_node: NodeExecution | None = None
        # One event loop per calling thread, kept across prompts: a fresh asyncio.run() per prompt
        # costs ~0.4 ms, a tenth of a trivial prompt.
        self._loops = threading.local()

    def validate(self, prompt: Any, partial_execution_targets: list[str] | None = None) -> ValidationResult:
        """Validate (and coerce in place) a prompt. Never raises; see validate.py."""
        return validate_prompt(self.registry, prompt, partial_execution_targets)

    def execute(self, prompt_id: str, prompt: dict, extra_data: dict, outputs_to_execute: list[str],
                emit: Emit, interrupt: Interrupt) -> ExecutionOutcome:
        """Run a validated prompt to the end; blocking. One prompt at a time."""
        with self._run_lock:
            self._apply_pending_clear()
            # As ComfyUI: an interrupt that arrived while nothing ran does not kill this prompt.
            interrupt.clear()
            run = _Run(self, prompt_id, prompt, extra_data, outputs_to_execute, emit, interrupt)
            try:
                return self._run_coroutine(run.run())
            finally:
                self.running_node = None
                self._apply_pending_clear()

    def _apply_pending_clear(self) -> None:
        if self._clear_requested:
            self._clear_requested = False
            self._cache.clear()

    def cache_clear(self) -> None:
        """Drop every cached output and node instance (POST /free); deferred while a prompt runs."""
        if self._run_lock.acquire(blocking=False):
            try:
                self._cache.clear()
            finally:
                self._run_lock.release()
        else:
            self._clear_requested = True

    @property
    def cache_size(self) -> int:
        return len(self._cache)


    def _run_coroutine(self, coroutine) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            runner = getattr(self._loops, "runner", None)
            if runner is None:
                runner = self._loops.runner = asyncio.Runner()
            # the caller's context (its bound node context), not the one the runner was made in
            return runner.run(coroutine, context=contextvars.copy_context())
        return _run_in_private_thread(coroutine)


def _run_in_private_thread(coroutine) -> Any:
    """Called from inside a running loop (not the worker's case): run on a private thread."""
    box: dict[str, Any] = {}

    def worker():
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as ex:
            box["error"] = ex
    thread = threading.Thread(target=worker, name="hearth-execute")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class _Run:
    """Everything about one prompt's execution."""

    def __init__(self, engine: Engine, prompt_id: str, prompt: dict, extra_data: dict,
                 outputs_to_execute: list[str], emit: Emit, interrupt: Interrupt) -> None:
        self.engine = engine
        self.cache = engine._cache
        self.prompt_id = prompt_id
        self.prompt = prompt if isinstance(prompt, dict) else {}
        self.extra_data = extra_data if isinstance(extra_data, dict) else {}
        self.outputs_to_execute = [o for o in (outputs_to_execute or []) if isinstance(o, str)]
        self.emit = emit
        self.interrupt = interrupt
        self.classes = ClassTable(engine.registry)
        self.dynprompt = DynamicPrompt(self.prompt)
        self.tracker = ProgressTracker(prompt_id, self.dynprompt, emit)
        self.state = RunState(prompt_id, emit, interrupt, self.tracker)
        self.is_changed: dict[str, Any] = {}
        self.signatures = Signatures(self.dynprompt, self.classes, self._is_changed_token)
        self.results: dict[str, list[list[Any]]] = {}   # node -> outputs (per slot, the list of values)
        self.local_ui: dict[str, dict[str, Any]] = {}   # ui produced in this run
        self.executed: list[str] = []
        self.pending_subgraph: dict[str, list[tuple[bool, Any]]] = {}
        self.pending_async: dict[str, list[Any]] = {}
        self.tasks: set[asyncio.Task] = set()
        self.ephemeral: list[str] = []
        self.scheduler: ExecutionList | None = None
        # Policy "none" frees a node's outputs once every node reading them has run (ComfyUI's
        # --cache-none saves memory this way): source -> nodes still to read it.
        self.free_early = engine.policy.kind == "none"
        self.readers: dict[str, set[str]] = {}
        self.result_sources: dict[str, list[str]] = {}  # expanded node -> nodes its result links to

    # -- the run ---------------------------------------------------------------
    async def run(self) -> ExecutionOutcome:
        emit, pid = self.emit, self.prompt_id
        emit(ExecutionStart(pid))
        failure: _Failure | None = None
        cached: list[str] = []
        try:
            node_ids = list(self.prompt)
            await self._evaluate_is_changed(node_ids)
            keys = {node_id: self.signatures.get(node_id) for node_id in node_ids}
            roots = {(node_id, node.get("class_type")) for node_id, node in self.prompt.items()
                     if isinstance(node, dict) and isinstance(node.get("class_type"), str)}
            self.cache.begin_prompt({k for k in keys.values() if k is not None}, roots)
            for node_id in node_ids:
                entry = self.cache.get(keys[node_id])
                if entry is not None and entry.outputs is not None:
                    self.results[node_id] = entry.outputs
                    cached.append(node_id)
            emit(ExecutionCached(pid, cached))
            if self.free_early:
                for node_id in node_ids:
                    self._add_reader(node_id)

            scheduler = self.scheduler = ExecutionList(self.dynprompt, self.classes, self._available)
            for output_id in self.outputs_to_execute:
                if self.dynprompt.has_node(output_id):
                    scheduler.add_node(output_id)
                else:
                    log.warning("prompt %s: output %r is not in the prompt; skipped", pid, output_id)

            while not scheduler.is_empty():
                node_id, cycle = scheduler.stage()
                if node_id is None and not cycle:
                    # Only async node work is outstanding: wait, but stay interruptible.
                    if self.interrupt.is_set():
                        waiting = next(iter(self.pending_async), None)
                        failure = _Failure(self.dynprompt.get_real_node_id(waiting) if waiting else "",
                                           interrupted=True)
                        break
                    await scheduler.wait_unblocked(0.1)
                    continue
                if cycle:
                    failure = self._cycle_failure(scheduler)
                    break
                result, failure = await self._execute_node(node_id)
                if result == FAILURE:
                    break
                if result == PENDING:
                    scheduler.unstage()
                else:
                    scheduler.complete()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as ex:  # a bug in the engine itself: report it rather than kill the worker
            log.exception("engine failure while running prompt %s", pid)
            staged = self.scheduler.staged if self.scheduler else None
            failure = _Failure(self.dynprompt.get_real_node_id(staged) if staged else "",
                               message=f"{ex}\n", exception_type=full_type_name(type(ex)),
                               traceback=traceback.format_tb(ex.__traceback__))
        finally:
            await self._cancel_tasks()

        error_event: Event | None = None
        if failure is None:
            emit(ExecutionSuccess(pid))
            status = "success"
        else:
            error_event = self._failure_event(failure)
            emit(error_event)
            status = "interrupted" if failure.interrupted else "error"
        outputs, meta = self._history_outputs()
        self.cache.end_prompt()
        return ExecutionOutcome(status, outputs, meta, error_event, list(self.executed), cached)

    def _failure_event(self, failure: _Failure) -> Event:
        node = self.prompt.get(failure.node_id)
        node_type = node.get("class_type") if isinstance(node, dict) else None
        if failure.interrupted:
            return ExecutionInterrupted(self.prompt_id, failure.node_id or None, node_type, list(self.executed))
        return ExecutionError(self.prompt_id, failure.node_id, node_type, list(self.executed), failure.message,
                              failure.exception_type, failure.traceback, failure.current_inputs,
                              list(self.prompt))

    def _cycle_failure(self, scheduler: ExecutionList) -> _Failure:
        nodes = scheduler.nodes_in_cycle()
        blamed = nodes[0] if nodes else ""
        # Static cycles were rejected by validation, so blame the first expanded node's display node.
        for node_id in nodes:
            display = self.dynprompt.get_display_node_id(node_id)
            if display != node_id:
                blamed = display
                break
        return _Failure(blamed, message="Dependency cycle detected", exception_type="graph.DependencyCycleError",
                        traceback=[], current_inputs=[])

    def _history_outputs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """ui of every node of the prompt the cache has ui for (ComfyUI's history "outputs")."""
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for node_id in [*self.prompt, *self.ephemeral]:
            ui = self._ui_for(node_id)
            if ui is not None:
                outputs[node_id] = ui["output"]
                meta[node_id] = ui["meta"]
        return outputs, meta

    def _ui_for(self, node_id: str) -> dict[str, Any] | None:
        ui = self.local_ui.get(node_id)
        if ui is None:
            entry = self.cache.get(self.signatures.get(node_id)) if self.dynprompt.has_node(node_id) else None
            ui = entry.ui if entry is not None else None
        return ui

    async def _cancel_tasks(self) -> None:
        unfinished = [t for t in self.tasks if not t.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished, timeout=5)
        for task in self.tasks:
            if task.done() and not task.cancelled():
                task.exception()  # mark retrieved: its failure was reported (or is moot)

    # -- availability and signatures -----------------------------------------------
    def _available(self, node_id: str) -> bool:
        """Outputs exist for this node: run earlier in this prompt, or a cache hit (also an identical node's)."""
        if node_id in self.results:
            return True
        if not self.dynprompt.has_node(node_id):
            return False
        entry = self.cache.get(self.signatures.get(node_id))
        if entry is not None and entry.outputs is not None:
            self.results[node_id] = entry.outputs
            return True
        return False

    def _is_changed_token(self, node_id: str) -> tuple[bool, Any]:
        if node_id not in self.is_changed:
            return True, False
        return is_changed_token(self.is_changed[node_id])

    async def _evaluate_is_changed(self, node_ids: list[str]) -> None:
        """IS_CHANGED of each node that has one, on constant inputs only (links are None), as ComfyUI."""
        for node_id in node_ids:
            if node_id in self.is_changed:
                continue
            node = self.dynprompt.get_node(node_id)
            try:
                info = self.classes.get(node.get("class_type"))
            except Exception:
                continue
            if not hasattr(info.cls, "IS_CHANGED"):
                continue
            inputs = node.get("inputs")
            try:
                data = constant_inputs(info, inputs if isinstance(inputs, dict) else {}, node_id)
                results = await self._map(node_id, info.cls, info, data, "IS_CHANGED")
                results = await _resolve(results)
                self.is_changed[node_id] = [None if isinstance(r, ExecutionBlocker) else r for r in results]
            except Exception as ex:
                log.warning("IS_CHANGED of node %s (%s) failed: %s", node_id, info.class_type, ex)
                self.is_changed[node_id] = float("nan")

    # -- one node ----------------------------------------------------------------------
    async def _execute_node(self, unique_id: str) -> tuple[str, _Failure | None]:
        dp = self.dynprompt
        real_id = dp.get_real_node_id(unique_id)
        display_id = dp.get_display_node_id(unique_id)
        parent_id = dp.get_parent_node_id(unique_id)
        node = dp.get_node(unique_id)
        class_type = node.get("class_type")
        input_data_all: dict[str, Any] | None = None
        scheduler = self.scheduler
        assert scheduler is not None
        try:
            info = self.classes.get(class_type)
            if self._available(unique_id):
                # Cached (or identical to a node that already ran): replay its ui, skip `executing`.
                ui = self._ui_for(unique_id)
                self.emit(Executed(self.prompt_id, unique_id, ui["output"] if ui else None, display_id))
                self.tracker.finish(unique_id)
                self._release_sources(unique_id)
                return SUCCESS, None

            if unique_id in self.pending_async:
                returns = [r.result() if isinstance(r, asyncio.Task) else r
                           for r in self.pending_async.pop(unique_id)]
                output_data, output_ui, has_subgraph = self._outputs_from_returns(returns, info)
            elif unique_id in self.pending_subgraph:
                output_data, output_ui, has_subgraph = self._resolve_subgraph(unique_id, info), {}, False
            else:
                self.tracker.start(unique_id)
                input_data_all, missing = self._input_data(unique_id, node, info)
                self.emit(Executing(self.prompt_id, unique_id, display_id))
                obj = self._instance(unique_id, class_type, info, real_id)

                if getattr(obj, "check_lazy_status", None) is not None:
                    requested = await self._map(unique_id, obj, info, input_data_all, "check_lazy_status",
                                                allow_interrupt=True)
                    needed = _requested_inputs(await _resolve(requested), input_data_all, missing)
                    if needed:
                        blocks_before = scheduler.block_count[unique_id]
                        for name in needed:
                            scheduler.make_input_strong_link(unique_id, name)
                        if scheduler.block_count[unique_id] > blocks_before:
                            return PENDING, None
                        # Nothing to wait for (ComfyUI would spin here): run with what there is.

                def on_blocked(blocker: ExecutionBlocker) -> ExecutionBlocker:
                    if blocker.message is None:
                        return blocker
                    self.emit(ExecutionBlocked(self.prompt_id, unique_id, class_type, list(self.executed),
                                               f"Execution Blocked: {blocker.message}", "ExecutionBlocked",
                                               [], [], []))
                    return ExecutionBlocker(None)  # report once; downstream nodes block silently

                if not info.function:
                    raise AttributeError(f"Node class {class_type} has no FUNCTION")
                returns = await self._map(unique_id, obj, info, input_data_all, info.function,
                                          allow_interrupt=True, on_blocked=on_blocked, graph_prefix=True)
                running = [r for r in returns if isinstance(r, asyncio.Task) and not r.done()]
                if running:
                    self.pending_async[unique_id] = returns
                    unblock = scheduler.add_external_block(unique_id)
                    self._spawn(_when_done(running, unblock))
                    return PENDING, None
                returns = [r.result() if isinstance(r, asyncio.Task) else r for r in returns]
                output_data, output_ui, has_subgraph = self._outputs_from_returns(returns, info)

            root = (real_id, self.prompt[real_id].get("class_type"))
            if output_ui:
                ui_entry = {"meta": {"node_id": unique_id, "display_node": display_id, "parent_node": parent_id,
                                     "real_node_id": real_id},
                            "output": output_ui}
                self.local_ui[unique_id] = ui_entry
                key = self.signatures.get(unique_id)
                if key is not None:
                    self.cache.set_ui(key, ui_entry, root, parent_id)
                self.emit(Executed(self.prompt_id, unique_id, output_ui, display_id))
            if has_subgraph:
                await self._expand(unique_id, output_data)
                return PENDING, None
            self.results[unique_id] = output_data
            key = self.signatures.get(unique_id)
            if key is not None:
                self.cache.set_outputs(key, output_data, root, parent_id)
        except ProcessingInterrupted:
            log.info("prompt %s interrupted at node %s", self.prompt_id, unique_id)
            return FAILURE, _Failure(real_id, interrupted=True)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as ex:  # any failure of node code ends the prompt, never the worker
            log.error("error in node %s (%s): %s", unique_id, class_type, ex, exc_info=ex)
            tips = OOM_TIPS if "OutOfMemoryError" in type(ex).__name__ else ""
            current_inputs = {}
            if input_data_all is not None:
                current_inputs = {name: [summarize_value(v) for v in values]
                                  for name, values in input_data_all.items()}
            return FAILURE, _Failure(real_id, message=f"{ex}\n{tips}", exception_type=full_type_name(type(ex)),
                                     traceback=traceback.format_tb(ex.__traceback__),
                                     current_inputs=current_inputs)

        self.tracker.finish(unique_id)
        self.executed.append(unique_id)
        self._release_sources(unique_id)
        self.cache.enforce_ram()
        return SUCCESS, None

    def _add_reader(self, node_id: str) -> None:
        inputs = self.dynprompt.get_node(node_id).get("inputs")
        if isinstance(inputs, dict):
            for value in inputs.values():
                if is_link(value):
                    self.readers.setdefault(value[0], set()).add(node_id)

    def _release_sources(self, node_id: str) -> None:
        """Policy "none": drop the outputs nobody will read any more (a later need just re-runs the node)."""
        if not self.free_early:
            return
        inputs = self.dynprompt.get_node(node_id).get("inputs")
        sources = [v[0] for v in inputs.values() if is_link(v)] if isinstance(inputs, dict) else []
        sources += self.result_sources.pop(node_id, [])
        for source in sources:
            readers = self.readers.get(source)
            if readers is None:
                continue
            readers.discard(node_id)
            if not readers:
                del self.readers[source]
                self.results.pop(source, None)
                self.cache.discard(self.signatures.get(source))

    def _instance(self, unique_id: str, class_type: str, info: ClassInfo, real_id: str) -> Any:
        """The node's object: one per node id, kept while the node stays in the prompt."""
        obj = self.cache.get_object(unique_id, class_type)
        if obj is None:
            obj = info.cls()
            self.cache.set_object(unique_id, class_type, obj, (real_id, self.prompt[real_id].get("class_type")))
        return obj

    def _input_data(self, unique_id: str, node: dict, info: ClassInfo) -> tuple[dict[str, Any], set[str]]:
        """Each input as the list of values the node is mapped over; missing links become (None,)."""
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            raise TypeError(f"Node {unique_id}: inputs must be an object, not {type(inputs).__name__}")
        data: dict[str, Any] = {}
        missing: set[str] = set()
        for name, value in inputs.items():
            category = info.input_info(name)[1]
            if is_link(value) and name not in info.raw_link_inputs:
                source, index = value
                if not self.dynprompt.has_node(source):
                    raise NodeNotFoundError(f"Input '{name}' of node {unique_id} links to node '{source}', "
                                            "which does not exist")
                outputs = self.results[source] if self._available(source) else None
                if isinstance(index, float) and index.is_integer():
                    index = int(index)
                if outputs is None or not isinstance(index, int) or index >= len(outputs):
                    missing.add(name)
                    data[name] = (None,)
                else:
                    data[name] = outputs[index]
            elif category is not None:
                data[name] = [value]
        for name, kind in info.hidden.items():
            known, value = hidden_value(kind, unique_id, self.dynprompt.get_original_prompt(), self.dynprompt,
                                        self.extra_data)
            if known:
                data[name] = [value]
        return data, missing

    async def _map(self, unique_id: str, obj: Any, info: ClassInfo, input_data_all: dict[str, Any], func_name: str,
                   allow_interrupt: bool = False, on_blocked: Callable | None = None,
                   graph_prefix: bool = False) -> list[Any]:
        """Call ``obj.func_name`` once per list item (ComfyUI's list mapping); async calls become tasks."""
        func = getattr(obj, func_name)
        is_async = info.is_coroutine(func_name)
        dp = self.dynprompt
        real_id, display_id, parent_id = (dp.get_real_node_id(unique_id), dp.get_display_node_id(unique_id),
                                          dp.get_parent_node_id(unique_id))
        results: list[Any] = []
        for index, kwargs in call_inputs(input_data_all, info.input_is_list):
            if allow_interrupt and self.interrupt.is_set():
                raise ProcessingInterrupted()
            blocker = _find_blocker(kwargs, info.input_is_list)
            if blocker is not None:
                results.append(on_blocked(blocker) if on_blocked is not None else blocker)
                continue
            if graph_prefix:
                # GraphBuilder() in this call gets the ids "<node>.<call>.<n>."
                GraphBuilder.set_default_prefix(unique_id, index or 0, 0)
            execution = NodeExecution(self.prompt_id, unique_id, display_id, parent_id, real_id, index, self.state)
            self.engine.running_node = execution
            if is_async:
                task = self._spawn(_call_async(func, kwargs, execution))
                await asyncio.sleep(0)  # let it start; quick coroutines finish right here
                results.append(task.result() if task.done() else task)
            else:
                token = bind(execution)
                try:
                    results.append(func(**kwargs))
                finally:
                    unbind(token)
        return results

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        return task

    # -- return values -----------------------------------------------------------------
    def _outputs_from_returns(self, returns: list[Any], info: ClassInfo) -> tuple[Any, dict[str, Any], bool]:
        """Split a node's return values into (outputs, ui, has_subgraph), merging list calls."""
        results: list[Any] = []
        uis: list[dict] = []
        subgraph_results: list[tuple[Any, Any]] = []
        has_subgraph = False
        width = info.return_count
        for r in returns:
            if isinstance(r, dict):
                if isinstance(r.get("ui"), dict):
                    uis.append(r["ui"])
                if "expand" in r:
                    has_subgraph = True
                    result = r.get("result")
                    if isinstance(result, ExecutionBlocker):
                        result = (result,) * width
                    subgraph_results.append((r["expand"], result))
                elif "result" in r:
                    result = r.get("result")
                    if isinstance(result, ExecutionBlocker):
                        result = (result,) * width
                    results.append(result)
                    subgraph_results.append((None, result))
            else:
                if isinstance(r, ExecutionBlocker):
                    r = (r,) * width
                elif r is None:
                    r = ()  # an output node that returns nothing
                results.append(r)
                subgraph_results.append((None, r))
        if has_subgraph:
            output: Any = subgraph_results
        elif results:
            output = _merge_results(results, info)
        else:
            output = []
        return output, _merge_ui(uis), has_subgraph

    async def _expand(self, unique_id: str, output_data: list[tuple[Any, Any]]) -> None:
        """Add the node's expansion graphs to the prompt; the node waits for the nodes its result links to."""
        dp = self.dynprompt
        scheduler = self.scheduler
        assert scheduler is not None
        new_ids: list[str] = []
        new_outputs: list[str] = []
        result_links: list[list] = []
        pending: list[tuple[bool, Any]] = []
        for new_graph, node_outputs in output_data:
            if new_graph is None:
                pending.append((False, node_outputs))
                continue
            if not isinstance(new_graph, dict):
                raise TypeError(f"'expand' must be a graph (dict of nodes), not {type(new_graph).__name__}")
            for node_id in new_graph:
                if dp.has_node(node_id):
                    raise DuplicateNodeError(f"Attempt to add duplicate node {node_id}. Ensure node ids are "
                                             "unique and deterministic or use graph_utils.GraphBuilder.")
            for node_id, node_info in new_graph.items():
                if not isinstance(node_info, dict):
                    raise TypeError(f"expanded node {node_id} must be a dict")
                child = self.classes.get(node_info.get("class_type"))
                node_info.setdefault("inputs", {})
                dp.add_ephemeral_node(node_id, node_info, unique_id, node_info.get("override_display_id", unique_id))
                new_ids.append(node_id)
                self.ephemeral.append(node_id)
                if child.is_output:
                    new_outputs.append(node_id)
            for value in node_outputs or ():
                if is_link(value):
                    if not dp.has_node(value[0]):
                        raise NodeNotFoundError(f"expansion result links to node '{value[0]}', which does not exist")
                    result_links.append(value)
            pending.append((True, node_outputs))

        # Expanded nodes are cached like any other (the same expansion reuses its results).
        await self._evaluate_is_changed(new_ids)
        keys = {node_id: self.signatures.get(node_id) for node_id in new_ids}
        self.cache.expanded(unique_id, {k for k in keys.values() if k is not None})
        for node_id in new_ids:
            entry = self.cache.get(keys[node_id])
            if entry is not None and entry.outputs is not None:
                self.results[node_id] = entry.outputs
        if self.free_early:
            for node_id in new_ids:
                self._add_reader(node_id)
            self.result_sources[unique_id] = [link[0] for link in result_links]
            for source in self.result_sources[unique_id]:
                self.readers.setdefault(source, set()).add(unique_id)
        for node_id in new_outputs:
            scheduler.add_node(node_id)
        for source, socket in result_links:
            scheduler.add_strong_link(source, socket, unique_id)
        self.pending_subgraph[unique_id] = pending

    def _resolve_subgraph(self, unique_id: str, info: ClassInfo) -> list[list[Any]]:
        """The expanded node's outputs, now that what its result links to has run."""
        resolved: list[tuple] = []
        for from_subgraph, result in self.pending_subgraph.pop(unique_id):
            if not from_subgraph:
                resolved.append(result)
                continue
            values: list[Any] = []
            for value in result or ():
                if is_link(value):
                    outputs = self.results.get(value[0]) if self._available(value[0]) else None
                    if outputs is None:
                        raise RuntimeError(f"expanded node {value[0]} produced no outputs")
                    values.extend(outputs[int(value[1])])
                else:
                    values.append(value)
            resolved.append(tuple(values))
        return _merge_results(resolved, info) if resolved else []


# -- helpers -------------------------------------------------------------------------------

async def _call_async(func: Callable, kwargs: dict[str, Any], execution: NodeExecution) -> Any:
    token = bind(execution)  # the task runs in its own copy of the context
    try:
        return await func(**kwargs)
    finally:
        unbind(token)


async def _when_done(tasks: list[asyncio.Task], unblock: Callable[[], None]) -> None:
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        unblock()


async def _resolve(results: list[Any]) -> list[Any]:
    """Wait for any tasks among map results; re-raise the first failure."""
    running = [r for r in results if isinstance(r, asyncio.Task) and not r.done()]
    if running:
        await asyncio.wait(running)
    return [r.result() if isinstance(r, asyncio.Task) else r for r in results]


def _find_blocker(kwargs: dict[str, Any], input_is_list: bool) -> ExecutionBlocker | None:
    for value in kwargs.values():
        if input_is_list and isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, ExecutionBlocker):
                    return item
        elif isinstance(value, ExecutionBlocker):
            return value
    return None


def _requested_inputs(results: list[Any], input_data_all: dict[str, Any], missing: set[str]) -> list[str]:
    """Names check_lazy_status asked for that are not available yet, in the order asked."""
    needed: list[str] = []
    for result in results:
        if isinstance(result, list):
            for name in result:
                if isinstance(name, str) and name not in needed and (name not in input_data_all or name in missing):
                    needed.append(name)
    return needed


def _merge_results(results: list[Any], info: ClassInfo) -> list[list[Any]]:
    """Per output slot, the list of values over all calls (OUTPUT_IS_LIST slots are concatenated)."""
    for r in results:
        if not isinstance(r, (tuple, list)):
            raise TypeError(f"{info.class_type}.{info.function} returned {type(r).__name__}; "
                            "a node must return a tuple of outputs (or a dict with 'result'/'ui')")
    width = len(results[0])
    flags = list(info.output_is_list[:width]) + [False] * (width - len(info.output_is_list))
    merged: list[list[Any]] = []
    for i, is_list in enumerate(flags):
        if is_list:
            values: list[Any] = []
            for r in results:
                if isinstance(r[i], ExecutionBlocker):
                    values.append(r[i])
                else:
                    values.extend(r[i])
            merged.append(values)
        else:
            merged.append([r[i] for r in results])
    return merged


def _merge_ui(uis: list[dict]) -> dict[str, Any]:
    """Concatenate the ui dicts of list calls; keys are those of the first, as ComfyUI."""
    if not uis:
        return {}
    merged: dict[str, Any] = {}
    for key in uis[0]:
        values: list[Any] = []
        for ui in uis:
            if key not in ui:
                continue
            value = ui[key]
            # ComfyUI expects lists here; a lone value is kept whole rather than iterated.
            if isinstance(value, (list, tuple)):
                values.extend(value)
            else:
                values.append(value)
        merged[key] = values
    return merged
