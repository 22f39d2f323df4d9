"""What every device of the example shares: its slice of the digits data and the model.

Each device holds a non-IID shard of scikit-learn's digits (a Dirichlet split over labels, the
same for every process thanks to a fixed seed) and trains a logistic-regression classifier
(`SGDClassifier(loss="log_loss")`, 10 × 64 coefficients + 10 intercepts = 650 weights) for a
few epochs, starting from the global model. `xaynet.sdk.flatten` turns `[coef_, intercept_]`
into the flat vector a round aggregates and back.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from xaynet.sdk.flatten import Layout, flatten, unflatten

CLASSES = np.arange(10)
# Every device's scalar is n_i / N_MAX: its sample count over a cap all devices agree on. It
# must stay in [0, 1] — the bound clamps scalars too, and a raw count would turn the weighted
# mean into a plain one. A device with more images uses N_MAX of them.
N_MAX = 400
LAYOUT: Layout = flatten([np.zeros((10, 64)), np.zeros(10)]).layout  # 650 = [model] length


def _split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    features, labels = load_digits(return_X_y=True)
    return train_test_split(features / 16.0, labels, test_size=0.2, random_state=seed, stratify=labels)


def shard(index: int, devices: int, alpha: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Device `index`'s training images: each digit is divided by Dirichlet(alpha) proportions."""
    train_x, _, train_y, _ = _split(seed)
    rng = np.random.default_rng(seed)
    mine: list[np.ndarray] = []
    for digit in CLASSES:
        members = rng.permutation(np.flatnonzero(train_y == digit))
        cuts = (np.cumsum(rng.dirichlet(np.full(devices, alpha)))[:-1] * len(members)).astype(int)
        mine.append(np.split(members, cuts)[index])
    rows = np.concatenate(mine)[:N_MAX]
    if len(rows) < 5:  # a device with (almost) nothing still gets a few random images
        rows = np.concatenate([rows, rng.choice(len(train_y), 5, replace=False)])
    return train_x[rows], train_y[rows]


def test_set() -> tuple[np.ndarray, np.ndarray]:
    _, test_x, _, test_y = _split()
    return test_x, test_y


def model_from(vector: list[float] | np.ndarray | None) -> SGDClassifier:
    """A classifier holding the global model (zeros before the first round)."""
    model = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=0.05, alpha=1e-4)
    coef, intercept = unflatten(np.zeros(LAYOUT.size) if vector is None else vector, LAYOUT)
    model.partial_fit(np.zeros((1, 64)), [0], classes=CLASSES)  # allocates coef_/intercept_
    model.coef_, model.intercept_ = coef, intercept
    return model


def train(
    vector: list[float] | np.ndarray | None, x: np.ndarray, y: np.ndarray, epochs: int = 5
) -> np.ndarray:
    """A few local epochs from the global model; returns the flat float32 vector to send."""
    model = model_from(vector)
    rng = np.random.default_rng(len(y))
    for _ in range(epochs):
        order = rng.permutation(len(y))
        model.partial_fit(x[order], y[order])
    return flatten([model.coef_, model.intercept_]).vector


def accuracy(vector: list[float] | np.ndarray) -> float:
    test_x, test_y = test_set()
    return float(model_from(vector).score(test_x, test_y))
