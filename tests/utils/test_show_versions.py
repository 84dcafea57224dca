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


def test_show_versions_imports_nothing_new():
    # it imported every optional package to read its version, and ``import
    # skada`` turned on scikit-learn's metadata routing for the whole process
    import subprocess
    import sys

    code = (
        "import sys, sklearn, skot\n"
        "before = sklearn.get_config()\n"
        "info = skot.show_versions(as_dict=True)\n"
        "assert sklearn.get_config() == before, sklearn.get_config()\n"
        "new = {'skada', 'imblearn', 'dask', 'distributed', 'matplotlib'}\n"
        "new &= set(sys.modules)\n"
        "assert not new, new\n"
        "assert info['dependencies']['torch'] and info['dependencies']['sklearn']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
