"""Runs before any pack is imported: records what was loaded then, and leaves a mark for the pack."""
import json
import os
import sys

import folder_paths

loaded = sorted(name for name in sys.modules if name.startswith("custom_nodes."))
os.environ["HEARTH_TEST_PRESTARTUP"] = json.dumps({"packs_loaded_before": loaded,
                                                   "base_path": folder_paths.base_path})
