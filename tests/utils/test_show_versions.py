import skot


def test_show_versions_prints_and_returns(capsys):
    assert skot.show_versions() is None
    out = capsys.readouterr().out
    assert "torch" in out and "skot" in out and "POT_BACKEND_DISABLE_JAX" in out
    info = skot.show_versions(as_dict=True)
    assert info["dependencies"]["skot"] == skot.__version__
    assert info["dependencies"]["sklearn"] is not None


def test_jax_backend_disabled_before_pot_import():
    import os

    assert os.environ.get("POT_BACKEND_DISABLE_JAX") == "1"
    assert os.environ.get("POT_BACKEND_DISABLE_TENSORFLOW") == "1"
