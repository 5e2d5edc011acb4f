"""Fixtures for node tests: a NodeContext over a fresh base directory, bound while the test runs."""
from __future__ import annotations

import pytest

from hearth.config import config_from_args
from hearth.nodes.builtin import register_builtin_nodes
from hearth.nodes.context import NodeContext, using
from hearth.nodes.registry import NodeRegistry
from hearth.paths import Folders


def make_node_ctx(base, *flags: str) -> NodeContext:
    """A NodeContext with every builtin node over a fresh base directory, started with ComfyUI flags."""
    cfg = config_from_args(["--base-directory", str(base), *flags])
    folders = Folders.from_config(cfg)
    folders.create()
    registry = NodeRegistry()
    register_builtin_nodes(registry)
    return NodeContext(cfg, folders, registry)


@pytest.fixture
def node_ctx(tmp_path):
    ctx = make_node_ctx(tmp_path)
    with using(ctx):
        yield ctx


def run_node(ctx: NodeContext, class_type: str, **inputs):
    """Call a node's FUNCTION the way the engine does (a fresh instance, keyword inputs)."""
    cls = ctx.registry.get(class_type)
    assert cls is not None, f"{class_type} is not registered"
    return getattr(cls(), cls.FUNCTION)(**inputs)
