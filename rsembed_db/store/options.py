"""Object-store configuration: LanceDB's storage options from the environment and the command line.

LanceDB (and so every command and the service) reads ``s3://``, ``gs://`` and ``az://``
URIs with the standard environment variables (``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP``,
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ...). Anything else is
a storage option: ``--storage-option KEY=VALUE`` on the command line, the service's
``storage_options`` setting, or ``$RSEMBED_STORAGE_OPTIONS`` (a JSON object), which the
CLI fills from its flags so that subprocesses and Ray workers see the same options.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from rsembed_db.errors import SpecError

ENV_STORAGE_OPTIONS = "RSEMBED_STORAGE_OPTIONS"
# Environment variables an object store may need; forwarded to Ray workers with the job.
FORWARDED_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "RSEMBED_")


def parse_storage_options(items: Iterable[str], field: str = "storage-option") -> dict[str, str]:
    """``KEY=VALUE`` pairs -> a dict; SpecError naming ``field`` for a malformed pair."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(field, f"expected KEY=VALUE (e.g. aws_endpoint=http://127.0.0.1:9000), got {item!r}")
        options[key.strip()] = value
    return options


def storage_options_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The options in ``$RSEMBED_STORAGE_OPTIONS`` (a JSON object of strings); {} when unset."""
    raw = (os.environ if env is None else env).get(ENV_STORAGE_OPTIONS, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpecError(ENV_STORAGE_OPTIONS, f"must be a JSON object of strings, got {raw!r}") from exc
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SpecError(ENV_STORAGE_OPTIONS, f"must be a JSON object of strings, got {raw!r}")
    return value


def export_storage_options(options: Mapping[str, str]) -> None:
    """Add ``options`` to ``$RSEMBED_STORAGE_OPTIONS`` of this process (and so of its children)."""
    merged = {**storage_options_from_env(), **options}
    if merged:
        os.environ[ENV_STORAGE_OPTIONS] = json.dumps(merged, sort_keys=True)


def forwarded_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The object-store and rsembed variables of ``env`` (default: this process's), for remote workers."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names an object store (``s3://``, ``gs://``, ``az://``, ...), not a local path."""
    scheme, sep, _ = uri.partition("://")
    return bool(sep) and scheme not in ("file", "")


_S3_KEYS = {  # object_store option names (with and without the aws_ prefix) -> S3FileSystem arguments
    "endpoint": "endpoint", "endpoint_url": "endpoint", "region": "region", "default_region": "region",
    "access_key_id": "access_key", "secret_access_key": "secret_key", "session_token": "session_token",
    "allow_http": "allow_http",
}


def arrow_filesystem(uri: str, storage_options: Mapping[str, str] | None = None):
    """A pyarrow file system and the path of ``uri`` in it, configured like LanceDB's object
    store: for ``s3://`` the ``AWS_*`` variables, then ``storage_options``; other URIs as pyarrow infers."""
    import pyarrow.fs as pafs

    if not uri.startswith("s3://"):
        return pafs.FileSystem.from_uri(uri)
    settings: dict[str, str] = {}
    for source in ({k[4:].lower(): v for k, v in os.environ.items() if k.startswith("AWS_")},
                   {k.lower().removeprefix("aws_"): v for k, v in (storage_options or {}).items()}):
        for key, value in source.items():
            if key in _S3_KEYS:
                settings[_S3_KEYS[key]] = value
    endpoint = settings.get("endpoint", "")
    scheme = "http" if endpoint.startswith("http://") else "https"
    fs = pafs.S3FileSystem(access_key=settings.get("access_key"), secret_key=settings.get("secret_key"),
                           session_token=settings.get("session_token"), region=settings.get("region"),
                           endpoint_override=endpoint.split("://", 1)[-1] or None, scheme=scheme)
    return fs, uri.removeprefix("s3://").rstrip("/")
