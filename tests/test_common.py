"""scikit-learn's common estimator checks over every public estimator.

INIT_PARAMS keeps the checks fast; EXPECTED_FAILED_CHECKS lists, per estimator,
the checks that are expected to fail and why (a deterministic estimator never
uses the ``non_deterministic`` tag to skip checks).
"""

import importlib

from sklearn.utils.estimator_checks import parametrize_with_checks

PUBLIC = [
    "FGWZeroShotClassifier",
    "SelectiveOTClassifier",
    "InfoOTAligner",
    "WassersteinCoresetSelector",
    "OTContrastiveEmbedder",
]

INIT_PARAMS = {
    # a class prior makes the prediction truly transductive (balanced OT)
    "FGWZeroShotClassifier": {"class_prior": "uniform"},
    "SelectiveOTClassifier": {},
    "InfoOTAligner": {},
    "WassersteinCoresetSelector": {"n_samples": 5, "max_iter": 5},
    "OTContrastiveEmbedder": {"max_epochs": 2},
}

TRANSDUCTIVE = (
    "prediction is transductive: each row's label depends on the other rows of "
    "the batch through the OT marginals, so a subset predicts differently"
)

NO_FIT_ITERATIONS = (
    "max_iter bounds the OT solver run at predict time (transductive); fit runs no "
    "iterations, so there is no n_iter_ to report"
)
ABSTAINS = (
    "a selective classifier abstains (reject_label) on 1 - coverage of the rows by "
    "design, so its labels are not all in classes_ and its plain accuracy is capped"
)

REJECT_IS_A_CLASS = (
    "the check's labels {-1, 1} contain the default reject_label=-1, which fit "
    "refuses (abstained rows would read as class -1); with reject_label outside "
    "the classes the check passes (test_selective_classes_with_reject_label_outside)"
)

TWO_VIEWS = (
    "fit_transform(X, Y) returns the pair (X_emb, Y_emb), the convention of "
    "sklearn's CCA; the check special-cases only sklearn's own cross-decomposition "
    "estimators by name"
)

EXPECTED_FAILED_CHECKS = {
    "FGWZeroShotClassifier": {
        "check_methods_subset_invariance": TRANSDUCTIVE,
        "check_non_transformer_estimators_n_iter": NO_FIT_ITERATIONS,
    },
    "SelectiveOTClassifier": {
        "check_methods_subset_invariance": TRANSDUCTIVE,
        "check_non_transformer_estimators_n_iter": NO_FIT_ITERATIONS,
        "check_classifiers_train": ABSTAINS,
        "check_classifiers_classes": REJECT_IS_A_CLASS,
    },
    "InfoOTAligner": {},
    "WassersteinCoresetSelector": {},
    "OTContrastiveEmbedder": {
        "check_transformer_general": TWO_VIEWS,
        "check_transformer_data_not_an_array": TWO_VIEWS,
    },
}


def _instances():
    import skot

    out = []
    for name in PUBLIC:
        try:
            cls = getattr(skot, name)
        except (ImportError, AttributeError):  # pragma: no cover - during development
            continue
        out.append(cls(**INIT_PARAMS[name]))
    return out


def _expected_failed(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(_instances(), expected_failed_checks=_expected_failed)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_every_public_estimator_is_checked():
    import skot

    for name in PUBLIC:
        assert name in skot.__all__
        importlib.import_module(skot._LAZY[name])  # importable


def test_selective_classes_with_reject_label_outside():
    from sklearn.utils.estimator_checks import check_classifiers_classes

    from skot import SelectiveOTClassifier

    check_classifiers_classes("SelectiveOTClassifier",
                              SelectiveOTClassifier(reject_label="abstain"))


def test_numeric_parameters_refuse_booleans():
    # True is an Integral and a Real to Python: hidden=True, n_components=True
    # or cut_num=True passed validation as 1 and failed inside torch
    import numpy as np
    import pytest
    from sklearn.utils._param_validation import InvalidParameterError

    import skot

    cases = [
        ("OTContrastiveEmbedder", "hidden"), ("OTContrastiveEmbedder", "n_components"),
        ("OTContrastiveEmbedder", "mix"), ("WassersteinCoresetSelector", "cut_num"),
        ("WassersteinCoresetSelector", "max_candidates"),
        ("SelectiveOTClassifier", "selection_reg"), ("FGWZeroShotClassifier", "reg"),
        ("InfoOTAligner", "max_iter"),
    ]
    X = np.random.default_rng(0).normal(size=(20, 4))
    for name, param in cases:
        est = getattr(skot, name)(**INIT_PARAMS[name]).set_params(**{param: True})
        args = (X, X[:, :3]) if name == "OTContrastiveEmbedder" else (X, np.arange(20) % 2)
        with pytest.raises(InvalidParameterError, match=f"'{param}' parameter.*Got True"):
            est.fit(*args)
