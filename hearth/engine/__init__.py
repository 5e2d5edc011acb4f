"""Hearth's execution engine: validation, scheduling, caching and running of prompts.

    engine = Engine(registry, CachePolicy(kind="classic"))
    result = engine.validate(prompt, partial_execution_targets)
    outcome = engine.execute(prompt_id, prompt, extra_data, result.outputs, emit, Interrupt())

Nodes use ``hearth.engine.progress`` (check_interrupt, report_progress,
send_text, current_execution) and ``hearth.engine.graph`` (ExecutionBlocker,
GraphBuilder, is_link).
"""
from hearth.engine.cache import CachePolicy
from hearth.engine.executor import Engine, ExecutionOutcome
from hearth.engine.graph import DynamicPrompt, ExecutionBlocker, GraphBuilder, is_link
from hearth.engine.progress import (Interrupt, ProcessingInterrupted, check_interrupt, current_execution,
                                    report_progress, send_text)
from hearth.engine.validate import ValidationResult, validate_node_input

__all__ = [
    "CachePolicy", "DynamicPrompt", "Engine", "ExecutionBlocker", "ExecutionOutcome", "GraphBuilder", "Interrupt",
    "ProcessingInterrupted", "ValidationResult", "check_interrupt", "current_execution", "is_link",
    "report_progress", "send_text", "validate_node_input",
]
