"""The output tensors a runtime serves, as V2 model metadata lists them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    """Name, V2 datatype and shape (``-1`` for the batch axis) of one output tensor."""

    name: str
    datatype: str
    shape: tuple[int, ...]
