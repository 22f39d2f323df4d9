"""flatten/unflatten: models to the protocol's flat vector and back, exactly."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from xaynet.core.mask.config import BoundType
from xaynet.sdk.flatten import flatten, unflatten

# dtypes a float32 vector holds exactly, and what only float64 holds exactly
EXACT_IN_F32 = [np.float32, np.float16, np.int8, np.int16, np.uint8, np.uint16, np.bool_]
EXACT_IN_F64 = [*EXACT_IN_F32, np.float64, np.int32, np.uint32]


def _leaves(dtypes: list[Any]) -> st.SearchStrategy[np.ndarray]:
    return st.sampled_from(dtypes).flatmap(
        lambda dtype: arrays(
            dtype,
            array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
            elements={"allow_nan": False} if np.dtype(dtype).kind == "f" else None,
        )
    )


def _models(dtypes: list[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        _leaves(dtypes),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(st.text("abcxyz._", min_size=1, max_size=6), children, max_size=3),
        ),
        max_leaves=6,
    )


def _assert_identical(original: Any, rebuilt: Any) -> None:
    assert type(original) is type(rebuilt) or isinstance(original, np.generic)
    if isinstance(original, dict):
        assert list(original) == list(rebuilt)
        for key in original:
            _assert_identical(original[key], rebuilt[key])
    elif isinstance(original, list | tuple):
        assert len(original) == len(rebuilt)
        for a, b in zip(original, rebuilt, strict=True):
            _assert_identical(a, b)
    else:
        a, b = np.asarray(original), np.asarray(rebuilt)
        assert (a.dtype, a.shape) == (b.dtype, b.shape)
        assert a.tobytes() == b.tobytes()  # bit for bit, -0.0 included


@settings(max_examples=200, deadline=None)
@given(model=_models(EXACT_IN_F32))
def test_float32_vector_round_trips_exactly(model: Any) -> None:
    vector, layout = flatten(model)
    assert vector.dtype == np.float32 and vector.ndim == 1 and len(vector) == layout.size
    _assert_identical(model, unflatten(vector, layout))


@settings(max_examples=200, deadline=None)
@given(model=_models(EXACT_IN_F64))
def test_float64_vector_round_trips_exactly(model: Any) -> None:
    vector, layout = flatten(model, np.float64)
    _assert_identical(model, unflatten(vector.tolist(), layout))  # a list, as the wheel API gives


def test_state_dict_order_and_names_are_kept() -> None:
    state = OrderedDict(
        [("fc1.weight", np.ones((3, 2), np.float32)), ("fc1.bias", np.array([1.5, -2, 0], np.float32))]
    )
    flat = flatten(state)
    assert flat.vector.tolist() == [1, 1, 1, 1, 1, 1, 1.5, -2, 0]
    assert [leaf.path for leaf in flat.layout.leaves] == ["fc1.weight", "fc1.bias"]
    rebuilt = unflatten(flat.vector * 2, flat.layout)
    assert isinstance(rebuilt, OrderedDict)
    assert rebuilt["fc1.bias"].tolist() == [3, -4, 0]


def test_sklearn_style_coefficients_and_python_numbers() -> None:
    model = [np.arange(6, dtype=np.float64).reshape(2, 3), np.array([0.25, -0.5]), 3, 0.5]
    vector, layout = flatten(model, np.float64)
    rebuilt = unflatten(vector, layout)
    assert rebuilt[2] == 3 and isinstance(rebuilt[2], int)
    assert rebuilt[3] == 0.5 and isinstance(rebuilt[3], float)
    assert np.array_equal(rebuilt[0], model[0])


def test_advice_reports_range_and_bound() -> None:
    flat = flatten({"w": np.array([[3.0, -0.5]], dtype=np.float32), "b": np.zeros(2, np.float32)})
    advice = flat.advice(max_scalar=1.0)
    assert (advice.low, advice.high, advice.count) == (-0.5, 3.0, 4)
    assert advice.smallest is BoundType.B2
    small = flatten([np.full(3, 0.4, np.float32)])
    assert small.advice(max_scalar=1.0).smallest is BoundType.B0
    assert small.advice(max_scalar=2.0).smallest is BoundType.B2  # B0 clamps the scalar itself to 1


def test_wrong_inputs_are_named() -> None:
    vector, layout = flatten([np.zeros(3), np.zeros(2)])
    with pytest.raises(ValueError, match="the vector has 4 values, the model layout needs 5"):
        unflatten(vector[:4], layout)
    with pytest.raises(TypeError, match=r"model entry 'layers\.1' is a str"):
        flatten({"layers": [np.zeros(2), "relu"]})
    with pytest.raises(TypeError, match="holds <U1 values"):
        flatten([np.array(["a"])])


def test_torch_state_dict_round_trips() -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'xaynet[torch]')")
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    state = net.state_dict()
    flat = flatten(state)
    assert flat.layout.size == sum(p.numel() for p in net.parameters())
    rebuilt = unflatten(flat.vector, flat.layout)
    assert list(rebuilt) == list(state)
    for key in state:
        assert torch.equal(rebuilt[key], state[key]) and rebuilt[key].dtype == state[key].dtype
    net.load_state_dict(rebuilt)
