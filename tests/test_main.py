"""The demo behind the README's first command (`python -m skot`)."""

import subprocess
import sys

import pytest

from skot.__main__ import main, run_demo


def test_help_lists_the_library(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ["OTContrastiveEmbedder", "FGWZeroShotClassifier", "SelectiveOTClassifier",
                 "InfoOTAligner", "WassersteinCoresetSelector", "skot.ot"]:
        assert name in out


def test_quick_demo_runs_and_writes_a_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rows = run_demo(quick=True, out_dir=tmp_path)
    out = capsys.readouterr().out
    assert "zero-shot, long-tailed" in out and "wrote" in out
    assert (tmp_path / "skot_demo_risk_coverage.png").stat().st_size > 1000
    scores = {(t, m): s for t, m, s in rows}
    # the claims the demo prints hold on its own data
    assert float(scores[("zero-shot, long-tailed", "true class prior (OT)")]) > float(
        scores[("zero-shot, long-tailed", "argmax cosine (default)")])


def test_module_entry_point_versions():
    out = subprocess.run([sys.executable, "-m", "skot", "--versions"],
                         capture_output=True, text=True, check=True)
    assert "torch" in out.stdout
