"""Caching of node outputs across prompts, keyed on input signatures.

A node's signature is a digest of its class, its constant inputs, its
``IS_CHANGED`` result, its id when it is ``NOT_IDEMPOTENT`` (or takes
``UNIQUE_ID``), and the signatures of the nodes it links to. Digests are
computed bottom-up (Merkle style), so a 1,000-node chain costs 1,000 small
hashes rather than ComfyUI's quadratic ancestor lists. A node whose signature
cannot be formed (an IS_CHANGED of NaN, an unhashable constant) is never reused,
nor is anything downstream of it.

Policies (what survives from one prompt to the next):
  classic  what the current prompt uses (ComfyUI's default): entries whose key
           a node of the new prompt has, plus the expansion results of nodes
           still in it.
  lru      everything, evicting whole least-recently-used prompt generations
           while there are more than ``lru_size`` entries (ComfyUI --cache-lru).
  none     nothing (ComfyUI --cache-none); identical nodes of one prompt still
           share one run.
  ram      everything, evicting least-recently-used entries of earlier prompts
           while free RAM is under ``ram_headroom_gb``.
Node instances are kept per (node id, class) while that node stays in the
prompt, so stateful nodes behave as in ComfyUI.
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from hearth.allocator import return_freed_memory
from hearth.engine.graph import DynamicPrompt, is_link
from hearth.engine.nodeclass import ClassTable

CACHE_KINDS = ("classic", "lru", "none", "ram")


@dataclass(frozen=True)
class CachePolicy:
    kind: str = "classic"
    lru_size: int = 0
    ram_headroom_gb: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in CACHE_KINDS:
            raise ValueError(f"unknown cache policy {self.kind!r}; expected one of {', '.join(CACHE_KINDS)}")


# ---------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------

class _Uncacheable(Exception):
    pass


def _reject(value: Any) -> Any:
    # json.dumps calls this for non-JSON values: such a constant has no stable key.
    raise _Uncacheable


def is_changed_token(results: Any) -> tuple[bool, Any]:
    """(usable, token) for an IS_CHANGED result list; NaN anywhere at the top means 'always re-run'."""
    if isinstance(results, float) and math.isnan(results):
        return False, None
    if isinstance(results, list):
        for item in results:
            if isinstance(item, float) and math.isnan(item):
                return False, None
    return True, results


# One configured encoder (stateless) instead of building one per json.dumps call.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_reject)


class Signatures:
    """Signature digests (16 bytes, or None when uncacheable) of the nodes of one prompt run."""

    def __init__(self, dynprompt: DynamicPrompt, classes: ClassTable,
                 is_changed: Callable[[str], tuple[bool, Any]]) -> None:
        self.dynprompt = dynprompt
        self.classes = classes
        self.is_changed = is_changed
        self._digests: dict[str, bytes | None] = {}

    def get(self, node_id: str) -> bytes | None:
        digest = self._digests.get(node_id, _MISSING)
        if digest is _MISSING:
            self._compute(node_id)
            digest = self._digests[node_id]
        return digest

    def _compute(self, root: str) -> None:
        # Iterative post-order walk: a node's digest needs its sources' first.
        digests = self._digests
        in_progress: set[str] = set()
        stack = [root]
        while stack:
            node_id = stack[-1]
            if node_id in digests:
                stack.pop()
                continue
            sources = self._sources(node_id)
            pending = [s for s in sources if s not in digests]
            if pending and node_id not in in_progress:
                in_progress.add(node_id)
                for source in pending:
                    if source in in_progress:
                        digests[source] = None  # a cycle: reported by the scheduler, never cached
                    else:
                        stack.append(source)
                continue
            stack.pop()
            in_progress.discard(node_id)
            digests[node_id] = self._digest(node_id)

    def _sources(self, node_id: str) -> list[str]:
        if not self.dynprompt.has_node(node_id):
            return []
        inputs = self.dynprompt.get_node(node_id).get("inputs")
        if not isinstance(inputs, dict):
            return []
        return [v[0] for v in inputs.values() if is_link(v)]

    def _digest(self, node_id: str) -> bytes | None:
        dp = self.dynprompt
        if not dp.has_node(node_id):
            return None
        node = dp.get_node(node_id)
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            return None
        class_type = node.get("class_type")
        try:
            info = self.classes.get(class_type)
        except Exception:
            return None
        usable, token = self.is_changed(node_id)
        if not usable:
            return None
        parts: list[Any] = [class_type, token,
                            node_id if (info.not_idempotent or info.has_unique_id) else None]
        try:
            for key in sorted(inputs):
                value = inputs[key]
                if is_link(value):
                    source = self._digests.get(value[0])
                    if source is None:
                        return None
                    parts.append([key, 1, source.hex(), value[1]])
                else:
                    parts.append([key, 0, value])
            payload = _CANONICAL_JSON.encode(parts)
        except (_Uncacheable, TypeError, ValueError, RecursionError):
            return None
        return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_MISSING = object()


# ---------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------

class CacheEntry:
    __slots__ = ("outputs", "ui", "generation", "root", "parent")

    def __init__(self, generation: int, root: tuple[str, str], parent: str | None) -> None:
        self.outputs: list[list[Any]] | None = None  # per output slot, the list of values
        self.ui: dict[str, Any] | None = None        # {"output": ui, "meta": {...}}
        self.generation = generation
        self.root = root                              # (prompt node id, class) it was produced under
        self.parent = parent                          # expanding node for ephemeral nodes


class OutputCache:
    def __init__(self, policy: CachePolicy) -> None:
        self.policy = policy
        self.entries: dict[bytes, CacheEntry] = {}
        # (node id, class_type) -> (instance, root) for node instances.
        self.objects: dict[tuple[str, str], tuple[Any, tuple[str, str]]] = {}
        self.generation = 0
        self._min_generation = 0
        self._children: dict[str, set[bytes]] = {}  # expanding node -> keys of its ephemeral nodes
        self._last_ram_check = 0.0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.objects.clear()
        self._children.clear()

    # -- prompt lifecycle ----------------------------------------------------
    def begin_prompt(self, used_keys: set[bytes], roots: set[tuple[str, str]]) -> None:
        """Apply the policy at the start of a prompt whose nodes have ``used_keys``."""
        self.generation += 1
        kind = self.policy.kind
        if kind == "none":
            self.clear()
            return
        self.objects = {k: v for k, v in self.objects.items() if v[1] in roots}
        if kind == "classic":
            self.entries = {k: e for k, e in self.entries.items()
                            if k in used_keys or (e.parent is not None and e.root in roots)}
            self._children = {p: {k for k in keys if k in self.entries} for p, keys in self._children.items()}
            return
        for key in used_keys:
            entry = self.entries.get(key)
            if entry is not None:
                entry.generation = self.generation
        if kind == "lru":
            self._evict_generations(max(0, int(self.policy.lru_size)))
        else:
            self.enforce_ram(force=True)

    def end_prompt(self) -> None:
        if self.policy.kind == "none":
            self.clear()  # nothing outlives the prompt; free the memory now

    def _evict_generations(self, max_size: int) -> None:
        # ComfyUI's LRU: drop whole generations, oldest first, never the current one.
        while len(self.entries) > max_size and self._min_generation < self.generation:
            self._min_generation += 1
            self.entries = {k: e for k, e in self.entries.items() if e.generation >= self._min_generation}

    def enforce_ram(self, force: bool = False) -> None:
        """RAM policy: evict older prompts' entries, least recent first, while free RAM is short."""
        if self.policy.kind != "ram":
            return
        now = time.monotonic()
        if not force and now - self._last_ram_check < 0.05:
            return
        self._last_ram_check = now
        import psutil

        headroom = float(self.policy.ram_headroom_gb) * (1024 ** 3)
        if psutil.virtual_memory().available >= headroom:
            return
        victims = sorted((e.generation, i, k) for i, (k, e) in enumerate(self.entries.items())
                         if e.generation < self.generation)
        for _, _, key in victims:
            del self.entries[key]
            # What the entry held is free but may still sit in the C heap (model code keeps freed
            # blocks, see hearth.allocator): hand it back so that it counts as available.
            gc.collect()
            return_freed_memory()
            if psutil.virtual_memory().available >= headroom:
                break

    # -- entries -------------------------------------------------------------
    def get(self, key: bytes | None) -> CacheEntry | None:
        if key is None:
            return None
        entry = self.entries.get(key)
        if entry is not None:
            entry.generation = self.generation
        return entry

    def _entry(self, key: bytes, root: tuple[str, str], parent: str | None) -> CacheEntry:
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = CacheEntry(self.generation, root, parent)
            if parent is not None:
                self._children.setdefault(parent, set()).add(key)
        entry.generation = self.generation
        return entry

    def discard(self, key: bytes | None) -> None:
        if key is not None:
            self.entries.pop(key, None)

    def set_outputs(self, key: bytes, outputs: list[list[Any]], root: tuple[str, str], parent: str | None) -> None:
        self._entry(key, root, parent).outputs = outputs

    def set_ui(self, key: bytes, ui: dict[str, Any], root: tuple[str, str], parent: str | None) -> None:
        self._entry(key, root, parent).ui = ui

    def expanded(self, parent_id: str, child_keys: set[bytes]) -> None:
        """A node expanded again: under classic, forget its previous expansion's other nodes."""
        if self.policy.kind != "classic":
            return
        old = self._children.get(parent_id)
        if not old:
            return
        for key in old - child_keys:
            entry = self.entries.get(key)
            if entry is not None and entry.parent == parent_id:
                del self.entries[key]
        self._children[parent_id] = old & child_keys

    # -- node instances --------------------------------------------------------
    def get_object(self, node_id: str, class_type: str) -> Any:
        found = self.objects.get((node_id, class_type))
        return found[0] if found is not None else None

    def set_object(self, node_id: str, class_type: str, instance: Any, root: tuple[str, str]) -> None:
        self.objects[(node_id, class_type)] = (instance, root)
