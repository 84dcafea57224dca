"""The Examples sections of skot's docstrings run and print what they show."""

import doctest
import importlib
import pkgutil
import warnings

import pytest

import skot

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(skot.__path__, prefix="skot.")
    if m.name != "skot.__main__"
)


def _examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in MODULES:
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            # a re-exported object is found once, in the module that defines it
            if test.examples and test.name.startswith(name + ".") and (
                    getattr(test, "filename", None) == getattr(module, "__file__", None)):
                yield pytest.param(test, id=test.name)


@pytest.mark.parametrize("test", list(_examples()))
def test_docstring_examples(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS
                                   | doctest.NORMALIZE_WHITESPACE)
    report = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an example must not warn either
        result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)
