"""A pack whose dependency is not installed."""
import hearth_test_no_such_dependency  # noqa: F401

NODE_CLASS_MAPPINGS = {}
