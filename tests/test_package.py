"""Top-level ``import skot``: cheap, silent, POT's JAX/TF backends off, and the
public subpackages reachable as attributes."""

import subprocess
import sys


def _run(code, **env):
    import os

    return subprocess.run([sys.executable, "-W", "error", "-c", code], check=True,
                          capture_output=True, text=True,
                          env={**os.environ, **env}).stdout


def test_import_is_cheap_and_silent():
    out = _run("import sys, os, skot\n"
               "heavy = {'ot', 'torch', 'skorch', 'matplotlib'}\n"
               "print(sorted(heavy & set(sys.modules)))\n"
               "print(os.environ['POT_BACKEND_DISABLE_JAX'], "
               "os.environ['POT_BACKEND_DISABLE_TENSORFLOW'])\n")
    assert out.split("\n")[:2] == ["[]", "1 1"]
    # the user's own choice is kept
    out = _run("import os, skot; print(os.environ['POT_BACKEND_DISABLE_JAX'])",
               POT_BACKEND_DISABLE_JAX="0")
    assert out.strip() == "0"


def test_subpackages_are_attributes():
    # ``import skot; skot.ot.solve(...)`` raised AttributeError (scikit-learn
    # resolves ``sklearn.svm`` after ``import sklearn``)
    out = _run("import skot\n"
               "print(skot.ot.solve.__name__, skot.datasets.make_clip_like.__name__,\n"
               "      skot.metrics.aurc.__name__, skot.plotting.__name__,\n"
               "      skot.losses.__name__, skot.parallel.global_loss.__name__)\n"
               "assert {'ot', 'datasets', 'metrics'} <= set(dir(skot))\n")
    assert out.split() == ["solve", "make_clip_like", "aurc", "skot.plotting",
                           "skot.losses", "global_loss"]
