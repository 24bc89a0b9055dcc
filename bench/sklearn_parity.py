"""mlp-backend's estimators against scikit-learn's own MLP on the same data and settings.

    python bench/sklearn_parity.py

Digits (held-out accuracy) for each solver, mean over seeds 0-2, and the diabetes set (held-out R², over seeds
0-19: a seed moves it by about 0.08), with the seconds each fit took. Figures go into bench/RESULTS.md by hand.
"""
import time
import warnings

import numpy as np
import sklearn.neural_network as sk
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import mlp_backend.estimators as ours


def compare(make_ours, make_theirs, X, y, seeds=(0, 1, 2)):
    Xa, Xb, ya, yb = train_test_split(X, y, random_state=0)
    rows = []
    for make in (make_ours, make_theirs):
        scores, seconds = [], []
        for seed in seeds:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = make(seed).fit(Xa, ya)
            seconds.append(time.perf_counter() - start)
            scores.append(model.score(Xb, yb))
        rows.append((np.mean(scores), np.std(scores), np.mean(seconds)))
    return rows


def main():
    X, y = load_digits(return_X_y=True)
    X = X / 16
    print("| data | settings | mlp-backend | scikit-learn |\n|---|---|---|---|")
    for solver, lr in (("adam", 1e-3), ("sgd", 0.05), ("lbfgs", 1e-3)):
        kw = dict(hidden_layer_sizes=(64,), solver=solver, learning_rate_init=lr, max_iter=100)
        (a, sa, ta), (b, sb, tb) = compare(lambda s: ours.MLPClassifier(random_state=s, **kw),
                                           lambda s: sk.MLPClassifier(random_state=s, **kw), X, y)
        print(f"| digits accuracy | {solver}, 64 hidden, 100 iterations | {a:.4f} ± {sa:.4f} ({ta:.2f} s) | "
              f"{b:.4f} ± {sb:.4f} ({tb:.2f} s) |")
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    y = (y - y.mean()) / y.std()
    kw = dict(hidden_layer_sizes=(32,), learning_rate_init=1e-2, max_iter=200)
    (a, sa, ta), (b, sb, tb) = compare(lambda s: ours.MLPRegressor(random_state=s, **kw),
                                       lambda s: sk.MLPRegressor(random_state=s, **kw), X, y, seeds=range(20))
    print(f"| diabetes R² (20 seeds) | adam, 32 hidden, 200 iterations | {a:.4f} ± {sa:.4f} ({ta:.2f} s) | "
          f"{b:.4f} ± {sb:.4f} ({tb:.2f} s) |")


if __name__ == "__main__":
    main()
