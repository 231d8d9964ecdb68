"""Model weights: where they come from, how they are found offline, how they are loaded.

Resolution order for a model's checkpoint file:

1. ``<weights_dir>/<file name>``, with ``weights_dir`` from ``model_config`` or the
   ``RSEMBED_WEIGHTS_DIR`` environment variable (the file's base name, as downloaded);
2. the Hugging Face cache (``hf_hub_download(..., local_files_only=True)`` at the pinned
   revision; ``cache_dir`` from ``model_config``, else the hub's default cache);
3. a Hugging Face download, unless ``HF_HUB_OFFLINE`` is set.

When none works the error names the file, where to download it and where to put it.
Random weights are never used.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rsembed_db.errors import MissingWeights, SpecError

WEIGHTS_DIR_ENV = "RSEMBED_WEIGHTS_DIR"
NESTED = ("state_dict", "model")  # Lightning / MAE training checkpoints wrap the tensors


@dataclass(frozen=True)
class WeightSource:
    """One published checkpoint file.

    ``repo_id`` is the Hugging Face repository (None when the file is published elsewhere),
    ``filename`` its path inside the repository, ``revision`` a commit hash or branch.
    ``local_name`` is the file's name in a weights folder when its base name would be
    ambiguous (several variants publish ``encoder.pt``).
    """

    filename: str
    url: str
    licence: str
    repo_id: str | None = None
    revision: str = "main"
    local_name: str | None = None

    @classmethod
    def hub(cls, repo_id: str, filename: str, licence: str, revision: str = "main",
            local_name: str | None = None) -> WeightSource:
        """A file of a Hugging Face repository, downloaded from ``revision``."""
        return cls(filename, f"https://huggingface.co/{repo_id}/resolve/{revision}/{filename}", licence, repo_id,
                   revision, local_name)

    @property
    def basename(self) -> str:
        """The file's name in a weights folder."""
        return self.local_name or Path(self.filename).name

    def describe(self) -> str:
        where = f"huggingface.co/{self.repo_id}@{self.revision}" if self.repo_id else self.url
        return f"{self.basename} from {where}"


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    origin: str  # "weights_dir" or "huggingface"
    revision: str | None  # the snapshot actually used (Hugging Face cache)

    def to_meta(self) -> dict[str, Any]:
        return {"weights_path": str(self.path), "weights_origin": self.origin,
                "weights_revision": self.revision}


def weights_dir(configured: str | None) -> Path | None:
    """The configured weights folder, else ``$RSEMBED_WEIGHTS_DIR``, else None."""
    value = configured or os.environ.get(WEIGHTS_DIR_ENV)
    return Path(value).expanduser() if value else None


def resolve_weights(model: str, source: WeightSource, folder: str | None = None,
                    cache_dir: str | None = None) -> ResolvedWeights:
    """The local checkpoint file for ``source``; MissingWeights saying where to get it when absent."""
    directory = weights_dir(folder)
    if directory is not None and (directory / source.basename).is_file():
        return ResolvedWeights(directory / source.basename, "weights_dir", None)
    tried = [f"{directory / source.basename} (weights_dir)"] if directory is not None else []
    if source.repo_id is not None:
        path, reason = _from_hub(source, cache_dir)
        if path is not None:
            return ResolvedWeights(path, "huggingface", _snapshot(path))
        tried.append(f"Hugging Face {source.repo_id}/{source.filename}@{source.revision} ({reason})")
    put = directory or f"a folder named by model_config weights_dir or ${WEIGHTS_DIR_ENV}"
    save = (f"put {source.basename}" if source.basename == Path(source.filename).name
            else f"save it as {source.basename}")
    raise MissingWeights(f"weights: no weights for model {model!r}: download {source.url} and {save} "
                         f"in {put}; tried: {'; '.join(tried) or 'nothing configured'}")


def _snapshot(path: Path) -> str | None:
    """The commit hash of a file in the Hugging Face cache (``.../snapshots/<hash>/...``)."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def _from_hub(source: WeightSource, cache_dir: str | None) -> tuple[Path | None, str]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None, "huggingface_hub is not installed: pip install 'rsembed-db[zoo]'"
    kwargs = {"repo_id": source.repo_id, "filename": source.filename, "revision": source.revision,
              "cache_dir": cache_dir}
    try:
        return Path(hf_hub_download(**kwargs, local_files_only=True)), ""
    except Exception:  # noqa: BLE001 - not cached; try the network below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return None, "not in the cache and HF_HUB_OFFLINE is set"
    try:
        return Path(hf_hub_download(**kwargs)), ""
    except Exception as exc:  # noqa: BLE001 - any hub failure becomes one clear SpecError
        return None, f"download failed: {type(exc).__name__}"


def load_state_dict(path: Path, allow_pickle: bool = False, nested: tuple[str, ...] = NESTED,
                    safe_types: tuple[type, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a torch checkpoint, unwrapped from ``nested`` keys (``state_dict`` / ``model``).

    Read with ``weights_only=True`` (plus ``safe_types``: plain classes a published file is
    known to pickle, such as ``argparse.Namespace``). A checkpoint that also pickles other
    objects (Lightning hyper-parameters) is read in full only with ``allow_pickle``, which
    callers set for files downloaded from the published repository, never for a local
    folder (unpickling runs code).
    """
    try:
        with torch.serialization.safe_globals(list(safe_types)):
            payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_pickle:
            raise SpecError("weights", f"{path} holds pickled objects besides tensors and is not "
                            "loaded from a local folder (unpickling runs code); save its state dict "
                            "alone (torch.save(checkpoint['state_dict'], path)) or let it be fetched "
                            "from the published repository") from exc
        payload = torch.load(path, map_location="cpu", weights_only=False)
    for key in nested:
        if isinstance(payload, Mapping) and isinstance(payload.get(key), Mapping):
            payload = payload[key]
    if not isinstance(payload, Mapping) or not all(torch.is_tensor(v) for v in payload.values()):
        raise SpecError("weights", f"{path} is not a state dict of tensors")
    return dict(payload)


def load_weights(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path,
                 may_miss: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module``; SpecError unless every parameter but ``may_miss``
    (name prefixes) comes from the checkpoint and every checkpoint tensor but ``drop``
    (name prefixes: MAE decoders...) fits the module."""
    kept = {k: v for k, v in state.items() if not k.startswith(drop)} if drop else dict(state)
    try:
        result = module.load_state_dict(kept, strict=False)
    except RuntimeError as exc:  # tensor shape mismatch
        raise SpecError("weights", f"{path} does not match the architecture: {exc}") from exc
    missing = [k for k in result.missing_keys if not k.startswith(may_miss)]
    if missing or result.unexpected_keys:
        raise SpecError("weights", f"{path} does not match the architecture: missing "
                        f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                        f"{result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}")
