"""The one catalog of every model and product: name -> the class that builds it.

An explicit table (no registration on import), resolved lazily so that listing the
models imports none of them. On-the-fly models name an ``Embedder`` subclass (run over
imagery by ``OnTheFlyProducer``); precomputed products name a ``BulkProducer``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from rsembed_db.errors import SpecError
from rsembed_db.models.base import Embedder, ModelDescription
from rsembed_db.producers.base import Producer, table_name_for
from rsembed_db.specs.canonical import canonical_json

Kind = Literal["on_the_fly", "precomputed"]


@dataclass(frozen=True)
class Entry:
    """Where a model's class lives (``module:Class``) and which kind it is."""

    kind: Kind
    target: str

    def load(self) -> type:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


def _model(target: str) -> Entry:
    return Entry("on_the_fly", f"rsembed_db.models.{target}")


def _product(target: str) -> Entry:
    return Entry("precomputed", f"rsembed_db.producers.products.{target}")


CATALOG: dict[str, Entry] = {
    "mosaiks": _model("mosaiks:MosaiksEmbedder"),
    "remoteclip": _model("remoteclip:RemoteClipEmbedder"),
    "prithvi": _model("prithvi:PrithviEmbedder"),
    "satmae": _model("satmae:SatMaeEmbedder"),
    "scalemae": _model("scalemae:ScaleMaeEmbedder"),
    "dofa": _model("dofa:DofaEmbedder"),
    "clay": _model("clay:ClayEmbedder"),
    "terrafm": _model("terrafm:TerraFmEmbedder"),
    "terramind": _model("terramind:TerraMindEmbedder"),
    "satmaepp": _model("satmaepp:SatMaePlusPlusEmbedder"),
    "thor": _model("thor:ThorEmbedder"),
    "fomo": _model("fomo:FomoEmbedder"),
    "wildsat": _model("wildsat:WildSatEmbedder"),
    "olmoearth": _model("olmoearth:OlmoEarthEmbedder"),
    "satvision": _model("satvision:SatVisionEmbedder"),
    "galileo": _model("galileo:GalileoEmbedder"),
    "anysat": _model("anysat:AnySatEmbedder"),
    "agrifm": _model("agrifm:AgriFMEmbedder"),
    "tessera": _product("tessera:TesseraProducer"),
    "gse": _product("gse:GseProducer"),
    "copernicus": _product("copernicus:CopernicusProducer"),
}


def list_models(kind: Kind | None = None) -> list[str]:
    """Every model name usable in ``get_embedding`` and ``rsembed-db ingest`` (of ``kind``)."""
    return sorted(name for name, entry in CATALOG.items() if kind is None or entry.kind == kind)


def entry(model: str) -> Entry:
    """The catalog entry of ``model``; SpecError naming ``model`` for unknown names."""
    if not isinstance(model, str) or model not in CATALOG:
        raise SpecError("model", f"unknown model {model!r}", list_models())
    return CATALOG[model]


def is_product(model: str) -> bool:
    return entry(model).kind == "precomputed"


def embedder_class(model: str) -> type[Embedder]:
    """The embedder class of an on-the-fly model; SpecError for products and unknown names."""
    if is_product(model):
        raise SpecError("model", f"{model!r} is a precomputed product, not an on-the-fly model",
                        list_models("on_the_fly"))
    cls: type[Embedder] = entry(model).load()
    return cls


def get_embedder(model: str, **config: Any) -> Embedder:
    """An embedder instance; SpecError naming ``model`` for unknown names or bad config."""
    return embedder_class(model)(**config)


def make_producer(model: str, imagery: Any = None, imagery_date: str | None = None,
                  model_config: dict[str, Any] | None = None, source: Any = None) -> Producer:
    """The producer for ``model``: a precomputed product, or an embedder over imagery.

    Imagery comes from ``source`` (``local:<path>``, ``gee[:<project>]``,
    ``stac:<url>[#collection]`` or a source instance; see ``sources.factory``), else
    from the local files ``imagery``. Producers given the same source instance share
    its fetches (and its ``stats``).
    """
    config = dict(model_config or {})
    if is_product(model):
        product: Producer = entry(model).load()(**config)
        return product
    # Imported here: the on-the-fly path pulls in torch, which listing models must not.
    from rsembed_db.producers.onthefly import OnTheFlyProducer
    from rsembed_db.sources.factory import make_source

    return OnTheFlyProducer(get_embedder(model, **config), make_source(source, imagery, imagery_date))


def describe_model(model: str, **model_config: Any) -> ModelDescription:
    """What ``model`` is (dim, bands, normalisation, weights...), without loading weights."""
    if is_product(model):
        return make_producer(model, model_config=model_config).description
    return get_embedder(model, **model_config).describe()


def model_table(model: str, model_config: dict[str, Any] | None = None) -> str:
    """The table holding ``model`` (with ``model_config``) embeddings."""
    if is_product(model):
        return make_producer(model, model_config=model_config).table_name
    embedder = get_embedder(model, **(model_config or {}))
    return table_name_for(model, embedder.dim, type(embedder)().dim)


def model_variant(model: str, model_config: dict[str, Any] | None = None) -> str | None:
    """The stored ``model_config`` value of an on-the-fly model's rows with this config
    (canonical JSON of the resolved config), so searches stay within one variant;
    None for products, whose config does not change values."""
    if is_product(model):
        return None
    return canonical_json(get_embedder(model, **(model_config or {})).config)


BACKENDS = ("auto", "gee")


def resolve_runtime(model: str, model_config: dict[str, Any] | None, backend: str = "auto",
                    device: str = "auto") -> dict[str, Any]:
    """``model_config`` completed with the reference API's ``backend`` and ``device`` choices.

    ``backend="gee"`` reads a product from Earth Engine (``gse``) or fetches an on-the-fly
    model's imagery there (``imagery_source``); ``device`` reaches models that run on one
    (``auto`` leaves the model's own choice; ``cpu`` is always fine).
    """
    config = dict(model_config or {})
    if not isinstance(backend, str) or backend.strip().lower() not in BACKENDS:
        raise SpecError("backend", f"got {backend!r}", BACKENDS)
    backend = backend.strip().lower()
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise SpecError("device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:<n>', got {device!r}")
    if is_product(model):
        if backend == "gee":
            if model != "gse":
                raise SpecError("backend", f"{model!r} reads its published files; backend 'gee' serves gse "
                                "and the imagery of on-the-fly models")
            config.setdefault("backend", "earthengine")
        return config
    if device != "auto":
        if "device" in embedder_class(model).runtime_options:
            config.setdefault("device", device)
        elif device != "cpu":
            raise SpecError("device", f"{model!r} runs on the CPU only, got {device!r}")
    return config


def imagery_source(model: str, backend: str, source: Any) -> Any:
    """The imagery source of a run: ``source`` when given, Earth Engine for ``backend="gee"``."""
    if source is None and not is_product(model) and backend.strip().lower() == "gee":
        return "gee"
    return source
