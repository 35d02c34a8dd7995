"""chainrule.sklearn: scikit-learn's estimator checks, and the same numbers as scikit-learn's MLP.

Estimator checks expected to fail (``expected_failed_checks``):
``check_sample_weight_equivalence_on_dense_data`` for the minibatch solvers
(reason below; the lbfgs instances pass it). Checks scikit-learn itself skips
here: the pandas checks (``check_sample_weights_pandas_series``,
``check_classifier_data_not_an_array``/``check_regressor_data_not_an_array``'s
pandas part) when pandas is not installed, ``check_array_api_input`` unless
``SCIPY_ARRAY_API=1`` (the network computes in NumPy), and the
``decision_function`` checks (scikit-learn's MLP has none either).
"""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    RandomizedSearchCV,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.errors import ModelFileError  # noqa: E402
from chainrule.sklearn import MLPClassifier, MLPRegressor, load  # noqa: E402

_MINIBATCH_WEIGHTS = (
    "minibatch training: a sample of weight 2 and the same sample twice land in different "
    "batches, so the two fits differ (scikit-learn's own MLP passes this check only with "
    "lbfgs; so does ours, below)"
)


def _expected_failures(estimator):
    if estimator.solver != "lbfgs":
        return {"check_sample_weight_equivalence_on_dense_data": _MINIBATCH_WEIGHTS}
    return {}


@parametrize_with_checks(
    [
        MLPClassifier(max_iter=100, random_state=0),
        MLPRegressor(max_iter=100, random_state=0),
        MLPClassifier(solver="lbfgs", dtype="float64", max_iter=100, random_state=0),
        MLPRegressor(solver="lbfgs", dtype="float64", max_iter=200, random_state=0),
    ],
    expected_failed_checks=_expected_failures,
)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# -- the same algorithm as scikit-learn's ------------------------------------------------


def _task(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6))
    if kind == "multiclass":
        return x, (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5)
    if kind == "binary":
        return x, np.where(x[:, 0] - x[:, 3] > 0, "yes", "no")
    if kind == "multilabel":
        return x, np.stack([x[:, 0] > 0, x[:, 1] > 0.3, x[:, 2] < 0]).T.astype(int)
    return x, np.stack([x[:, 0] * x[:, 1], np.sin(x[:, 2])]).T  # two-output regression


def _pair(kind, **params):
    ours = MLPRegressor if kind == "regression" else MLPClassifier
    theirs = sk.MLPRegressor if kind == "regression" else sk.MLPClassifier
    return ours(dtype="float64", **params), theirs(**params)


def _fit_quietly(estimator, x, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(x, y, **kwargs)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_one_epoch_gives_scikit_learns_weights(solver, kind):
    # 100 samples in batches of 32: the last batch is short, so alpha's 1/batch scaling shows.
    x, y = _task(kind)
    params = dict(hidden_layer_sizes=(7, 5), solver=solver, alpha=1e-3, batch_size=32,
                  learning_rate_init=0.05, max_iter=1, shuffle=False, random_state=3)
    ours, theirs = _pair(kind, **params)
    _fit_quietly(ours, x, y)
    _fit_quietly(theirs, x, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    assert ours.out_activation_ == theirs.out_activation_
    # Copied weights, a second epoch from them (warm start), again the same.
    ours.set_params(warm_start=True)
    theirs.set_params(warm_start=True)
    theirs.coefs_ = [c + 0.01 for c in theirs.coefs_]
    ours.coefs_ = theirs.coefs_
    ours.intercepts_ = theirs.intercepts_
    _fit_quietly(ours, x, y)
    _fit_quietly(theirs, x, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_partial_fit_follows_scikit_learn():
    x, y = _task("multiclass")
    ours, theirs = _pair("multiclass", hidden_layer_sizes=(6,), batch_size=20, shuffle=False,
                         learning_rate_init=0.01, random_state=2)
    for rows in (slice(0, 50), slice(50, 100), slice(0, 100)):  # Adam's state carries over
        ours.partial_fit(x[rows], y[rows], classes=[0, 1, 2])
        theirs.partial_fit(x[rows], y[rows], classes=[0, 1, 2])
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert ours.loss_curve_ == pytest.approx(theirs.loss_curve_, rel=1e-9)


@pytest.mark.parametrize("learning_rate", ["invscaling", "adaptive"])
def test_sgd_schedules_follow_scikit_learn(learning_rate):
    x, y = _task("multiclass")
    params = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate=learning_rate,
                  learning_rate_init=0.3, momentum=0.9, max_iter=12, n_iter_no_change=2,
                  tol=0.05, batch_size=25, shuffle=False, random_state=0)
    ours, theirs = _pair("multiclass", **params)
    _fit_quietly(ours, x, y)
    _fit_quietly(theirs, x, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_lbfgs_matches_scikit_learn_with_sample_weight(kind):
    x, y = _task(kind)
    if kind == "regression":
        # One output: for several, scikit-learn's lbfgs loss (mean over outputs) and its
        # gradient (sum over outputs) disagree, so its line search follows another path.
        y = y[:, 0]
    weight = np.linspace(0.2, 3.0, len(x))
    ours, theirs = _pair(kind, hidden_layer_sizes=(6,), solver="lbfgs", alpha=0.01,
                         max_iter=15, random_state=1)
    _fit_quietly(ours, x, y, sample_weight=weight)
    _fit_quietly(theirs, x, y, sample_weight=weight)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_class_weight_is_sample_weight_per_class():
    x, y = _task("multiclass")
    balanced = MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=10,
                             class_weight="balanced", dtype="float64", random_state=0)
    by_sample = clone(balanced).set_params(class_weight=None)
    _fit_quietly(balanced, x, y)
    _fit_quietly(by_sample, x, y, sample_weight=compute_sample_weight("balanced", y))
    np.testing.assert_array_equal(balanced.coefs_[0], by_sample.coefs_[0])
    plain = _fit_quietly(clone(by_sample), x, y)
    assert not np.allclose(plain.coefs_[0], balanced.coefs_[0])


# -- labels, outputs, attributes ----------------------------------------------------------


def test_string_labels_probabilities_and_attributes():
    x, y = _task("multiclass")
    labels = np.array(["ant", "bee", "cat"], dtype=object)[y]
    clf = _fit_quietly(MLPClassifier(hidden_layer_sizes=(10,), max_iter=30, random_state=0),
                       x, labels)
    assert list(clf.classes_) == ["ant", "bee", "cat"]
    assert set(clf.predict(x)) <= {"ant", "bee", "cat"}
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(clf.predict_log_proba(x), np.log(proba), rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(x), clf.classes_[proba.argmax(axis=1)])
    assert clf.network_.dtype == np.float32
    assert [c.shape for c in clf.coefs_] == [(6, 10), (10, 3)]
    assert len(clf.loss_curve_) == clf.n_iter_ == 30
    assert clf.n_features_in_ == 6 and clf.out_activation_ == "softmax"


def test_multilabel_and_multioutput_shapes():
    x, y = make_multilabel_classification(n_samples=60, n_classes=4, random_state=0)
    clf = _fit_quietly(MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0), x, y)
    assert clf.predict(x).shape == (60, 4) and clf.predict_proba(x).shape == (60, 4)
    assert clf.out_activation_ == "logistic"
    x, y = make_regression(n_samples=50, n_features=3, n_targets=3, random_state=0)
    reg = _fit_quietly(MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0), x, y)
    assert reg.predict(x).shape == (50, 3)


def test_partial_fit_continues_and_needs_classes():
    x, y = _task("multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(6,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(x, y)
    clf.partial_fit(x[:50], y[:50], classes=[0, 1, 2])
    clf.partial_fit(x[50:], y[50:])
    assert clf.network_.optimizer.steps == 2  # one optimizer, one step per call (batch 50)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


def test_early_stopping_keeps_the_best_validation_weights():
    x, y = load_digits(return_X_y=True)
    clf = _fit_quietly(MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True,
                                     n_iter_no_change=3, max_iter=40, random_state=0), x / 16, y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_network_builder_in_a_pipeline_and_searches():
    x, y = load_digits(return_X_y=True)
    x, y = x[:300], y[:300]

    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(network=_builder, learning_rate_init=0.02, max_iter=15, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, x, y, cv=3)
        fitted = model.fit(x, y)
    assert scores.mean() > 0.8
    assert [type(layer).__name__ for layer in fitted[-1].network_.layers] == [
        "Dense", "Tanh", "Dense"]
    search = GridSearchCV(model, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=2, n_jobs=2)
    _fit_quietly(search, x, y)  # n_jobs=2: fitted estimators travel back to this process by pickle
    assert search.best_score_ > 0.8
    random = RandomizedSearchCV(
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0),
        {"learning_rate_init": [1e-3, 1e-2]}, n_iter=2, cv=2, random_state=0,
    )
    _fit_quietly(random, x / 16, y)
    assert set(random.cv_results_["param_learning_rate_init"]) == {1e-3, 1e-2}
    copy = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(copy.predict_proba(x), fitted.predict_proba(x))
    copy[-1].partial_fit(StandardScaler().fit_transform(x), y)  # optimizer relinked


def test_a_cnn_builder_with_input_shape(tmp_path):
    x, y = load_digits(return_X_y=True)
    x, y = x[:300] / 16, y[:300]

    def cnn(n_features, n_outputs, rng):  # 8x8 digits: 4 maps of 6x6, pooled to 3x3
        return [cr.Conv2D(1, 4, 3, rng=rng), cr.ReLU(), cr.MaxPool2D(2), cr.Flatten(),
                cr.Dense(36, n_outputs, rng=rng)]

    clf = _fit_quietly(MLPClassifier(network=cnn, input_shape=(1, 8, 8), learning_rate_init=0.01,
                                     max_iter=20, random_state=0), x, y)
    assert clf.score(x, y) > 0.8
    assert [type(layer).__name__ for layer in clf.network_.layers][:3] == ["Conv2D", "ReLU",
                                                                           "MaxPool2D"]
    clf.save(tmp_path / "cnn.safetensors")
    back = load(tmp_path / "cnn.safetensors")
    assert back.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(back.predict_proba(x), clf.predict_proba(x))
    stopped = _fit_quietly(clone(clf).set_params(early_stopping=True, max_iter=3), x, y)
    assert len(stopped.validation_scores_) == 3  # validation rows scored as rows
    with pytest.raises(ValueError, match=r"input_shape \(1, 8, 7\) holds 56 values"):
        clone(clf).set_params(input_shape=(1, 8, 7)).fit(x, y)


def _builder(n_features, n_outputs, rng):
    return [cr.Dense(n_features, 24, rng=rng), cr.Tanh(), cr.Dense(24, n_outputs, rng=rng)]


# -- files --------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    x, y = _task("binary")
    clf = _fit_quietly(MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0), x, y)
    path = tmp_path / "clf.safetensors"
    clf.save(path)
    back = load(path)
    assert type(back) is MLPClassifier and back.get_params() == clf.get_params()
    np.testing.assert_array_equal(back.classes_, ["no", "yes"])
    np.testing.assert_array_equal(back.predict_proba(x), clf.predict_proba(x))
    np.testing.assert_array_equal(back.predict(x), clf.predict(x))
    assert back.loss_curve_ == clf.loss_curve_ and back.n_iter_ == 5
    assert isinstance(cr.load(path), cr.Network)  # still a plain chainrule model file

    x, y = _task("regression")
    reg = _fit_quietly(MLPRegressor(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=5), x, y)
    reg.save(tmp_path / "reg.safetensors")
    np.testing.assert_array_equal(load(tmp_path / "reg.safetensors").predict(x), reg.predict(x))


def test_load_refuses_tampered_metadata_and_plain_models(tmp_path):
    from safetensors.numpy import load_file, save_file

    x, y = _task("multiclass")
    clf = _fit_quietly(MLPClassifier(hidden_layer_sizes=(5,), max_iter=2), x, y)
    path = tmp_path / "clf.safetensors"
    clf.save(path)
    from chainrule.io import read_safetensors

    _, metadata = read_safetensors(path)
    info = json.loads(metadata["sklearn_estimator"])
    info["fitted"]["classes_"]["values"] = [2, 1, 0]
    metadata["sklearn_estimator"] = json.dumps(info)
    save_file(load_file(path), tmp_path / "bad.safetensors", metadata=metadata)
    with pytest.raises(ModelFileError, match="digest"):
        load(tmp_path / "bad.safetensors")
    # Consistent digests but contents that cannot be right: refused by the checks after it.
    from chainrule.io import DIGEST_KEY, tensor_digest

    for field, value, message in [("classes_", {"values": [0, 1], "dtype": "<i8"}, "2 classes"),
                                  ("out_activation_", "relu", "out_activation_"),
                                  ("n_outputs_", 7, "n_outputs_"),
                                  ("classes_", {"values": [[1]], "dtype": "<i8"}, "strings or")]:
        forged = json.loads(json.dumps(info))
        forged["fitted"]["classes_"] = {"values": [0, 1, 2], "dtype": "<i8"}
        forged["fitted"][field] = value
        metadata["sklearn_estimator"] = json.dumps(forged)
        tensors = load_file(path)
        metadata[DIGEST_KEY] = tensor_digest(tensors, metadata)
        save_file(tensors, tmp_path / "forged.safetensors", metadata=metadata)
        with pytest.raises(ModelFileError, match=message):
            load(tmp_path / "forged.safetensors")
    clf.network_.save(tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="chainrule.load"):
        load(tmp_path / "plain.safetensors")


def test_to_onnx_outputs_the_logits(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x, y = _task("multiclass")
    clf = _fit_quietly(MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0), x, y)
    clf.to_onnx(tmp_path / "clf.onnx")
    session = ort.InferenceSession(str(tmp_path / "clf.onnx"))
    (logits,) = session.run(None, {"input": x.astype(np.float32)})
    np.testing.assert_allclose(cr.activations.softmax(logits), clf.predict_proba(x), rtol=1e-5)
