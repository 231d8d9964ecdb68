"""Published per-band Sentinel-2 statistics for input standardisation.

Source: SSL4EO-S12 v1.0 (Wang et al. 2023, "SSL4EO-S12: A large-scale multimodal,
multitemporal dataset for self-supervised learning in Earth observation", IEEE GRSM),
band means and standard deviations "calculated from 50k data" (a 50k-patch subset of
the dataset), as published in the dataset's repository github.com/zhu-xlab/SSL4EO-S12,
file src/benchmark/pretrain_ssl/datasets/SSL4EO/ssl4eo_dataset.py (constants
S2C_MEAN/S2C_STD for Level-1C, S2A_MEAN/S2A_STD for Level-2A). Values are in digital
numbers (reflectance x 10000); only the numbers were taken.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = ("SSL4EO-S12 v1.0 band statistics (Wang et al. 2023), "
          "github.com/zhu-xlab/SSL4EO-S12 src/benchmark/pretrain_ssl/datasets/SSL4EO/ssl4eo_dataset.py")

_L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
_L1C_MEAN = (1605.57504906, 1390.78157673, 1314.8729939, 1363.52445545, 1549.44374991,
             2091.74883118, 2371.7172463, 2299.90463006, 2560.29504086, 830.06605044,
             22.10351321, 2177.07172323, 1524.06546312)
_L1C_STD = (786.78685367, 850.34818441, 875.06484736, 1138.84957046, 1122.17775652,
            1161.59187054, 1274.39184232, 1248.42891965, 1345.52684884, 577.31607053,
            51.15431158, 1336.09932639, 1136.53823676)

# Level-2A has no B10 (cirrus): sen2cor drops it.
_L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
_L2A_MEAN = (752.40087073, 884.29673756, 1144.16202635, 1297.47289228, 1624.90992062,
             2194.6423161, 2422.21248945, 2517.76053101, 2581.64687018, 2645.51888987,
             2368.51236873, 1805.06846033)
_L2A_STD = (1108.02887453, 1155.15170768, 1183.6292542, 1368.11351514, 1370.265037,
            1355.55390699, 1416.51487101, 1474.78900051, 1439.3086061, 1582.28010962,
            1455.52084939, 1343.48379601)


@dataclass(frozen=True)
class BandStats:
    """Mean and standard deviation of one band, in digital numbers (reflectance x 10000)."""

    mean: float
    std: float


def _table(bands: tuple[str, ...], means: tuple[float, ...], stds: tuple[float, ...]) -> dict[str, BandStats]:
    return {b: BandStats(m, s) for b, m, s in zip(bands, means, stds, strict=True)}


# Product level -> band -> statistics.
S2_STATS: dict[str, dict[str, BandStats]] = {
    "s2_l1c": _table(_L1C_BANDS, _L1C_MEAN, _L1C_STD),
    "s2_l2a": _table(_L2A_BANDS, _L2A_MEAN, _L2A_STD),
}
