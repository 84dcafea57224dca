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


def test_bad_seed_and_out_are_usage_errors(tmp_path, capsys):
    # a seed numpy refuses (the demo also uses seed + 1, seed + 2) and an --out
    # that is a file ended in tracebacks
    for seed in ("-1", str(2**32 - 2), "x"):
        with pytest.raises(SystemExit) as exit_info:
            main(["--quick", "--seed", seed])
        assert exit_info.value.code == 2
        assert "--seed" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--out", str(afile)])
    assert exit_info.value.code == 2 and "is a file" in capsys.readouterr().err
    # a folder that cannot be created (below a file) ended in a traceback
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--out", str(afile / "sub")])
    assert exit_info.value.code == 2 and "cannot create" in capsys.readouterr().err


def test_demo_leaves_the_callers_warning_filters():
    import warnings

    import sklearn.linear_model  # noqa: F401  (the demo's imports, done first:
    import skorch  # noqa: F401               importing adds their own filters)

    import skot  # noqa: F401

    before = list(warnings.filters)
    run_demo(quick=True, plot=False)
    assert warnings.filters == before
