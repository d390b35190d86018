"""Name -> component registries, so configs name components and code never branches on names.

Usage:
    ENCODERS = Registry("encoder")

    @ENCODERS.register("vit")
    class ViT(nnx.Module): ...

    ENCODERS.get("vit")  # -> ViT; an unknown name raises with the list of valid names.

Registration happens at import time; `dgr_jax.models`, `dgr_jax.losses`, ... import their
modules so that importing the package is enough to populate its registries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A small mapping from names to components with helpful errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none registered)"
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: Any) -> bool:
        return name in self._items


ENCODERS: Registry[Any] = Registry("encoder")
DECODERS: Registry[Any] = Registry("decoder")
HEADS: Registry[Any] = Registry("head")
LOSSES: Registry[Any] = Registry("loss term")
EVALUATORS: Registry[Any] = Registry("evaluator")
PP_OPS: Registry[Any] = Registry("preprocessing op")
DATASETS: Registry[Any] = Registry("dataset builder")
