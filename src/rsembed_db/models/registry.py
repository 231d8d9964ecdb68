"""The model registry: name -> embedder class."""

from __future__ import annotations

from typing import Any

from rsembed_db.models.base import Embedder, ModelDescription
from rsembed_db.specs.errors import SpecError

_REGISTRY: dict[str, type[Embedder]] = {}


def register(cls: type[Embedder]) -> type[Embedder]:
    """Class decorator adding an embedder under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"model {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Importing the modules registers their embedders. The zoo modules import their
    # architecture packages (the ``zoo`` extra) only when a model runs, so they are
    # always listed; running one without the extra raises SpecError.
    from rsembed_db.models import clay, dofa, mosaiks, prithvi, remoteclip, satmae, scalemae  # noqa: F401


def list_models() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def embedder_class(name: str) -> type[Embedder]:
    """The registered class of ``name``; SpecError naming ``model`` for unknown names."""
    _load_builtin()
    if name not in _REGISTRY:
        raise SpecError("model", f"unknown model {name!r}", sorted(_REGISTRY))
    return _REGISTRY[name]


def get_embedder(name: str, **config: Any) -> Embedder:
    """An embedder instance; SpecError naming ``model`` for unknown names or bad config."""
    _load_builtin()
    if name not in _REGISTRY:
        raise SpecError("model", f"unknown model {name!r}", sorted(_REGISTRY))
    return _REGISTRY[name](**config)


def describe_model(name: str, **config: Any) -> ModelDescription:
    return get_embedder(name, **config).describe()
