"""Text search over HTTP (the explorer's text box) with a tiny RemoteCLIP in the published format."""

from __future__ import annotations

import numpy as np
import torch
from fastapi.testclient import TestClient

from rsembed_db import H3Cell, TemporalSpec
from rsembed_db.api import get_embeddings_batch
from rsembed_db.models import remoteclip
from rsembed_db.producers.catalog import get_embedder
from rsembed_db.service import ServiceSettings, create_app
from rsembed_db.store import EmbeddingStore
from tests.conftest import SCENE

TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def test_text_search_over_http_ranks_like_the_text_embedding(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(remoteclip.VARIANTS, "ViT-B-32", remoteclip.Variant(32, 32, TINY))
    torch.manual_seed(0)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(get_embedder("remoteclip").build().state_dict(), weights / "RemoteCLIP-ViT-B-32.pt")
    monkeypatch.setenv("RSEMBED_WEIGHTS_DIR", str(weights))  # where the server's embedder finds them

    store = EmbeddingStore(tmp_path / "db")
    cells = [H3Cell(c) for c in ("881f1c6481fffff", "881f1c6485fffff", "881f1c64e1fffff", "881f1c64e5fffff")]
    stored = get_embeddings_batch("remoteclip", spatials=cells, temporal=TemporalSpec.year(2017), imagery=SCENE,
                                  store=store, model_config={"tokens": "global", "device": "cpu"})
    text = get_embedder("remoteclip", tokens="global").encode_text(["solar farm"])[0]
    expected = sorted((1 - float(text @ e.data / np.linalg.norm(e.data)), e.meta["key"]) for e in stored)

    with TestClient(create_app(ServiceSettings(db=str(tmp_path / "db")))) as client:
        assert client.get("/v1/tables/remoteclip").json()["text_search"] is True
        answer = client.post("/v1/search", json={"model": "remoteclip", "text": "solar farm", "k": 10,
                                                 "filters": {"year": 2017}})
        assert answer.status_code == 200, answer.text
        rows = answer.json()["results"]
        assert [r["key"] for r in rows] == [key for _, key in expected]
        np.testing.assert_allclose([r["distance"] for r in rows], [d for d, _ in expected], atol=1e-5)
        both = client.post("/v1/search", json={"model": "remoteclip", "text": "x", "vector": [0.0] * 32})
        assert both.status_code == 422 and both.json()["error"]["field"] == "text"
