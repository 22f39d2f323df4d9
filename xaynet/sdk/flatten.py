"""Models as the protocol sees them: one flat vector, and back to the model's own shape.

A round aggregates a flat vector of `model_length` numbers; models come as numpy arrays,
lists of arrays (scikit-learn's `[coef_, intercept_]`, an MLP's `coefs_`) or PyTorch state
dicts. `flatten` concatenates every array of such a structure (nested dicts, lists and tuples;
dict order kept) into one vector and remembers a `Layout`; `unflatten` rebuilds the same
structure with the same shapes, dtypes and — for tensors — devices. Values the vector's dtype
holds come back bit for bit (a float32 model in a float32 vector; anything up to float32 or
int32 in a float64 vector); the default float32 matches the default round data type F32.

The result also answers "which mask bound do I need?": `flatten(model).advice(max_scalar)`
reports the value range and the smallest bound type that holds it (`xaynet.sdk.bounds`).
PyTorch is optional: it is imported only to rebuild tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from xaynet.core.mask.config import DataType
from xaynet.sdk.bounds import BoundAdvice, advise

Kind = Literal["numpy", "torch", "python"]


@dataclass(frozen=True)
class Leaf:
    """One array of the model: where it sits, its shape and type, where it lives."""

    path: str  # "fc1.weight", "0", "layers/2/bias"
    shape: tuple[int, ...]
    dtype: str  # a numpy dtype name; for tensors the numpy twin of the tensor's dtype
    kind: Kind
    device: str | None = None  # torch only
    python_type: str | None = None  # "int"/"float" for plain Python numbers

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Layout:
    """How to cut a flat vector back into the model it came from."""

    leaves: tuple[Leaf, ...]
    skeleton: Any  # the structure, with leaf indices where the arrays were

    @property
    def size(self) -> int:
        """The model length the coordinator must be configured with (`[model] length`)."""
        return sum(leaf.size for leaf in self.leaves)


class Flattened(NamedTuple):
    """`vector, layout = flatten(model)`; `.advice(max_scalar)` for the bound to configure."""

    vector: npt.NDArray[Any]
    layout: Layout

    def advice(self, max_scalar: float = 1.0, data_type: DataType | None = None) -> BoundAdvice:
        """Value range and the smallest bound type holding every weight × `max_scalar`."""
        return advise(self.vector, max_scalar, data_type)


class _Slot(NamedTuple):
    position: int


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _leaf_array(value: Any, path: str) -> tuple[npt.NDArray[Any], Leaf]:
    if _is_tensor(value):
        tensor = value.detach()
        try:
            array = tensor.cpu().numpy()
        except TypeError as error:  # e.g. bfloat16 has no numpy twin
            raise TypeError(f"model entry {path!r}: {error}; convert it with .float() first") from None
        return array, Leaf(path, tuple(array.shape), array.dtype.name, "torch", str(tensor.device))
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"model entry {path!r} holds {array.dtype} values, not numbers")
        return array, Leaf(path, tuple(array.shape), array.dtype.name, "numpy")
    if isinstance(value, bool | int | float):
        array = np.asarray(value)
        return array, Leaf(path, (), array.dtype.name, "python", python_type=type(value).__name__)
    raise TypeError(
        f"model entry {path!r} is a {type(value).__name__}; expected numpy arrays or torch tensors "
        "(in dicts, lists or tuples)"
    )


def _walk(model: Any, path: str, arrays: list[npt.NDArray[Any]], leaves: list[Leaf]) -> Any:
    """Collect the arrays depth first; return the skeleton with slots where they were."""
    join = (lambda key: f"{path}.{key}") if path else str
    if isinstance(model, Mapping):
        items = [(key, _walk(value, join(key), arrays, leaves)) for key, value in model.items()]
        return (type(model), items)
    if isinstance(model, list | tuple) and not _is_tensor(model):
        return (type(model), [_walk(value, join(i), arrays, leaves) for i, value in enumerate(model)])
    array, leaf = _leaf_array(model, path or "model")
    arrays.append(array.reshape(-1))
    leaves.append(leaf)
    return _Slot(len(leaves) - 1)


def flatten(model: Any, dtype: npt.DTypeLike = np.float32) -> Flattened:
    """One vector of `dtype` holding every array of `model`, and the layout to undo it."""
    arrays: list[npt.NDArray[Any]] = []
    leaves: list[Leaf] = []
    skeleton = _walk(model, "", arrays, leaves)
    target = np.dtype(dtype)
    vector = np.concatenate([a.astype(target) for a in arrays]) if arrays else np.zeros(0, target)
    return Flattened(vector, Layout(tuple(leaves), skeleton))


def unflatten(vector: Any, layout: Layout) -> Any:
    """The model `layout` describes, with the values of `vector` (e.g. a global model)."""
    flat = np.asarray(vector).reshape(-1)
    if len(flat) != layout.size:
        raise ValueError(f"the vector has {len(flat)} values, the model layout needs {layout.size}")
    offsets = np.cumsum([0, *(leaf.size for leaf in layout.leaves)])
    rebuilt = [_rebuild(flat[offsets[i] : offsets[i + 1]], leaf) for i, leaf in enumerate(layout.leaves)]
    return _fill(layout.skeleton, rebuilt)


def _rebuild(values: npt.NDArray[Any], leaf: Leaf) -> Any:
    array = values.astype(np.dtype(leaf.dtype)).reshape(leaf.shape)
    if leaf.kind == "torch":
        import torch  # noqa: PLC0415 - optional dependency, only for models that hold tensors

        return torch.from_numpy(np.ascontiguousarray(array)).to(leaf.device)
    if leaf.kind == "python":
        return {"bool": bool, "int": int}.get(leaf.python_type or "", float)(array.item())
    return array


def _fill(skeleton: Any, rebuilt: list[Any]) -> Any:
    if isinstance(skeleton, _Slot):
        return rebuilt[skeleton.position]
    container, items = skeleton
    if issubclass(container, Mapping):
        return container((key, _fill(value, rebuilt)) for key, value in items)
    return container(_fill(value, rebuilt) for value in items)
