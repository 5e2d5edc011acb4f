"""hearth.allocator: freed blocks kept for reuse while models run, handed back on request."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hearth import allocator

REPO = Path(__file__).resolve().parents[2]

# In a fresh process: in the test process earlier tests may have left free heap the block would reuse.
_PROBE = """
import psutil
from hearth import allocator
if KEEP:
    assert allocator.keep_freed_memory()
proc = psutil.Process()
before = proc.memory_info().rss
block = bytearray(100 << 20)  # zero-filled: every page touched
del block
kept = proc.memory_info().rss - before
allocator.return_freed_memory()
print(kept >> 20, (before + kept - proc.memory_info().rss) >> 20)
"""


@pytest.mark.parametrize("keep", [True, False])
def test_freed_blocks_are_kept_and_given_back(keep):
    if allocator._glibc() is None:
        pytest.skip("not glibc")
    out = subprocess.run([sys.executable, "-c", f"KEEP = {keep}\n" + _PROBE], capture_output=True, text=True,
                         check=True, cwd=REPO)
    kept_mib, returned_mib = map(int, out.stdout.split())
    if keep:  # a 100 MiB block stays for the next step (no fresh page faults) until it is handed back
        assert kept_mib >= 90 and returned_mib >= 90, out.stdout
    else:  # glibc's defaults unmap it at once: the behaviour keep_freed_memory changes
        assert kept_mib < 10, out.stdout


def test_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False
    allocator.return_freed_memory()
