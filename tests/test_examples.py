"""Every gallery example runs on CPU, prints its numbers and stays under 60 s.

The documentation build (.ci/docs) runs them too; this test gives the same check
without Sphinx. Marked slow (about a minute in total on 2 cores).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("plot_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    pytest.importorskip("matplotlib")
    env = dict(os.environ, MPLBACKEND="Agg")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), f"{path.name} printed nothing"
    assert elapsed < 60, f"{path.name} took {elapsed:.1f} s (limit 60 s)"
