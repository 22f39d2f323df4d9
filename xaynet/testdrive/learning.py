"""A real learning problem for test-drive: handwritten digits, split non-IID over participants.

scikit-learn's bundled digits (1,797 8×8 images, no download) are split into a training and a
test set; the training set is dealt out to participants with a Dirichlet split over labels
(each participant sees a few digits often and others rarely — the situation federated
averaging has to cope with on real devices). The model is a softmax regression (64 pixels →
10 classes, 650 weights), trained locally with a few epochs of mini-batch SGD from the
global model, all in numpy. The baseline is scikit-learn's `LogisticRegression` trained
centrally on the whole training set and evaluated on the same test set.

scikit-learn is an optional dependency (`pip install 'xaynet[examples]'`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FEATURES = 64
CLASSES = 10
MODEL_LENGTH = FEATURES * CLASSES + CLASSES  # W (64×10) then b (10)
MIN_SHARD = 7  # samples per participant, at least
TEST_FRACTION = 0.2

Floats = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


class MissingExtraError(RuntimeError):
    """An optional dependency of the learning task is not installed."""


def _sklearn() -> Any:
    try:
        import sklearn.datasets  # noqa: PLC0415 - optional dependency
        import sklearn.linear_model  # noqa: PLC0415
        import sklearn.model_selection  # noqa: PLC0415
    except ImportError:
        raise MissingExtraError(
            "the digits task needs scikit-learn: pip install 'xaynet[examples]'"
        ) from None
    return sklearn


@dataclass(frozen=True)
class Digits:
    """The split data set: features scaled to [0, 1]."""

    train_x: Floats
    train_y: Labels
    test_x: Floats
    test_y: Labels


def load_digits(seed: int = 0) -> Digits:
    sklearn = _sklearn()
    features, labels = sklearn.datasets.load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = sklearn.model_selection.train_test_split(
        features / 16.0, labels, test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    return Digits(train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64))


def max_participants(data: Digits) -> int:
    """Participants a split can serve with MIN_SHARD samples each and room for label skew."""
    return len(data.train_y) // (2 * MIN_SHARD)


def dirichlet_shards(
    labels: Labels, participants: int, alpha: float, rng: np.random.Generator
) -> list[Labels]:
    """Indices per participant: each class is divided by proportions ~ Dirichlet(alpha).

    Small alpha means strong skew (alpha → ∞ is IID). Shards that end up below MIN_SHARD
    samples are topped up with random samples of the largest shard, so every participant can
    train.
    """
    if participants * 2 * MIN_SHARD > len(labels):
        raise ValueError(f"{len(labels)} samples cannot serve {participants} participants")
    owner = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        cuts = np.floor(np.cumsum(rng.dirichlet(np.full(participants, alpha)))[:-1] * len(members))
        owner[members] = np.searchsorted(cuts, np.arange(len(members)), side="right")
    sizes = np.bincount(owner, minlength=participants)
    while sizes.min() < MIN_SHARD:
        small, large = int(sizes.argmin()), int(sizes.argmax())
        donors = rng.choice(np.flatnonzero(owner == large), MIN_SHARD - sizes[small], replace=False)
        owner[donors] = small
        sizes = np.bincount(owner, minlength=participants)
    return [np.flatnonzero(owner == i) for i in range(participants)]


def label_skew(labels: Labels, shards: list[Labels]) -> float:
    """Mean share of a participant's most common digit in its shard (IID ≈ 1/10)."""
    return float(np.mean([np.bincount(labels[s], minlength=CLASSES).max() / len(s) for s in shards]))


def split_model(flat: npt.NDArray[Any]) -> tuple[Floats, Floats]:
    weights = np.asarray(flat, dtype=np.float64)
    return weights[: FEATURES * CLASSES].reshape(FEATURES, CLASSES), weights[FEATURES * CLASSES :]


def initial_model() -> npt.NDArray[np.float32]:
    return np.zeros(MODEL_LENGTH, dtype=np.float32)


def train_local(
    flat: npt.NDArray[Any],
    features: Floats,
    labels: Labels,
    rng: np.random.Generator,
    *,
    epochs: int = 5,
    learning_rate: float = 0.5,
    batch: int = 16,
    l2: float = 1e-3,
) -> npt.NDArray[np.float32]:
    """A few epochs of mini-batch SGD on the softmax cross-entropy, from the global model."""
    weights, bias = split_model(flat)
    weights, bias = weights.copy(), bias.copy()
    targets = np.eye(CLASSES)[labels]
    for _ in range(epochs):
        order = rng.permutation(len(labels))
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            logits = features[rows] @ weights + bias
            logits -= logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            error = (probabilities - targets[rows]) / len(rows)
            weights -= learning_rate * (features[rows].T @ error + l2 * weights)
            bias -= learning_rate * error.sum(axis=0)
    return np.concatenate([weights.ravel(), bias]).astype(np.float32)


def accuracy(flat: npt.NDArray[Any], features: Floats, labels: Labels) -> float:
    weights, bias = split_model(flat)
    predicted = (features @ weights + bias).argmax(axis=1)
    return float(np.mean(predicted == labels))


def central_baseline(data: Digits) -> float:
    """Test accuracy of scikit-learn's LogisticRegression trained on all training data."""
    model = _sklearn().linear_model.LogisticRegression(max_iter=2000)
    model.fit(data.train_x, data.train_y)
    return float(model.score(data.test_x, data.test_y))
