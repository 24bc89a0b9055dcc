import numpy as np
import pytest
from sklearn import metrics as skm

import mlp_backend as mlp


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    p[:100] = y[:100]
    assert mlp.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    np.testing.assert_array_equal(mlp.confusion_matrix(y, p), skm.confusion_matrix(y, p))
    ours = mlp.classification_report(y, p, as_dict=True)
    theirs = skm.classification_report(y, p, output_dict=True)
    for key in [*map(str, range(5)), "macro avg", "weighted avg"]:
        for field in ("precision", "recall", "f1-score", "support"):
            assert ours[key][field] == pytest.approx(theirs[key][field]), (key, field)
    text = mlp.classification_report(y, p, class_names=list("abcde"))
    assert "weighted avg" in text and text.splitlines()[2].strip().startswith("a")


def test_regression_scores_match_scikit_learn():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=50), rng.normal(size=50)
    scores = mlp.regression_scores(y, p)
    assert scores["mse"] == pytest.approx(skm.mean_squared_error(y, p))
    assert scores["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert scores["r2"] == pytest.approx(skm.r2_score(y, p))


def test_metric_errors():
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        mlp.accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\]"):
        mlp.confusion_matrix([0, 1, 2], [0, 1, 1], num_classes=2)
