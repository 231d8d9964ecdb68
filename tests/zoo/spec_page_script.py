"""A user's script written only from the reference library's "API Specs & Data Structures"
page, code block by code block, for the models rsembed-db has. Only the place and the
window differ from the page's examples (they point at the bundled Havelland scene of
2017-02-16 instead of Shanghai in 2022). tests/zoo/test_dropin.py runs it with the
import renamed to rsembed-db's package and nothing else changed.
"""

from rs_embed import (
    BBox,
    Embedding,
    ExportConfig,
    ExportModelRequest,
    ExportTarget,
    FetchSpec,
    InputPrepSpec,
    Model,
    OutputSpec,
    PointBuffer,
    SensorSpec,
    TemporalSpec,
    describe_model,
    export_batch,
    get_embedding,
)

LON, LAT = 12.61, 52.49                       # the page: 121.5, 31.2
WINDOW = ("2017-01-01", "2017-04-01")         # the page: ("2022-06-01", "2022-09-01")

# SpatialSpec
bbox = BBox(minlon=12.58, minlat=52.48, maxlon=12.62, maxlat=52.50, crs="EPSG:4326")
bbox.validate()
point = PointBuffer(lon=LON, lat=LAT, buffer_m=2048, crs="EPSG:4326")

# TemporalSpec
documented = TemporalSpec(mode="range", year=None, start=WINDOW[0], end=WINDOW[1])
year_spec = TemporalSpec.year(2022)
range_spec = TemporalSpec.range(*WINDOW)

# SensorSpec (every documented field)
sensor = SensorSpec(
    collection="COPERNICUS/S2_SR_HARMONIZED",
    bands=("B4", "B3", "B2"),
    scale_m=10,
    cloudy_pct=30,
    fill_value=0.0,
    composite="median",
    modality=None,
    orbit=None,
    use_float_linear=True,
    s1_require_iw=True,
    s1_relax_iw_on_empty=True,
    check_input=False,
    check_raise=True,
    check_save_dir=None,
)

# FetchSpec and its example
fetch = FetchSpec(scale_m=None, cloudy_pct=None, fill_value=None, composite=None)
prithvi_emb = get_embedding(
    "prithvi",
    spatial=point,
    temporal=range_spec,
    fetch=FetchSpec(scale_m=10, cloudy_pct=10),
)

# OutputSpec
pooled_spec = OutputSpec.pooled(pooling="mean")   # shape: (D,)
grid_spec = OutputSpec.grid()                     # shape: (D, H, W), normalized to north-up when possible
native_spec = OutputSpec.grid(grid_orientation="native")
full_spec = OutputSpec(mode="grid", pooling="mean", grid_orientation="north_up")

# InputPrepSpec
tiled = InputPrepSpec.tile()
resized = InputPrepSpec.resize()
automatic = InputPrepSpec.auto(max_tiles=4)
tile_224 = InputPrepSpec.tile(tile_size=224)
explicit = InputPrepSpec(mode="resize", tile_size=None, tile_stride=None, max_tiles=9, pad_edges=True)
shorthands = ["tile", "resize", "auto"]

# ExportTarget / ExportConfig / ExportModelRequest
combined = ExportTarget.combined("exports/run")
per_item = ExportTarget.per_item("exports/items", names=["p1", "p2"])
config = ExportConfig(
    save_inputs=True,
    save_embeddings=True,
    chunk_size=32,
    num_workers=8,
    resume=True,
)
my_s1_sensor = SensorSpec(collection="COPERNICUS/S1_GRD", bands=("VV", "VH"), orbit="descending")
requests = [
    ExportModelRequest("remoteclip"),
    ExportModelRequest("terrafm", modality="s1", sensor=my_s1_sensor),
    ExportModelRequest.configure("thor", variant="large"),
]
manifest = export_batch(
    spatials=[point],
    temporal=range_spec,
    models=[requests[0]],
    target=combined,
    config=config,
)

# Embedding, and the page's example
wrapped = Embedding(data=prithvi_emb.data, meta={"model": "prithvi"})
emb = get_embedding(
    "remoteclip",
    spatial=PointBuffer(lon=LON, lat=LAT, buffer_m=2048),
    temporal=TemporalSpec.range(*WINDOW),
    fetch=FetchSpec(scale_m=10),
)
print(emb.data.shape)
print(emb.meta["model"])
print(emb.meta.get("sensor"))
grid = get_embedding("remoteclip", spatial=point, temporal=range_spec, output=OutputSpec.grid(), input_prep="tile")

# describe_model() / Model.describe()
desc = describe_model("remoteclip")
print(desc["output"])
print(desc["defaults"]["image_size"])
model = Model("remoteclip")
print(model.describe()["type"])
