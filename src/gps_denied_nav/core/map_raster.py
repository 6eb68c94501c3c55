"""Georeferenced map raster on a north-up ENU grid, and the GeoTIFF loader that produces it.

Every stage that touches the map (provisioning, rendering, matching, plots) works in the ENU frame of a
``LocalTangentPlane``, so an orthophoto in any CRS rasterio reads is resampled once onto a north-up grid
of square pixels in that frame. The resampling is exact geodesy (ENU -> WGS84 -> source CRS with pyproj)
evaluated on a node grid every few pixels and interpolated bilinearly; the mapping is so smooth that the
interpolation error is far below a thousandth of a pixel, and it turns a 48-Mpixel load from tens of
seconds of per-pixel geodesy into a few seconds. ``cv2.remap`` then samples the source window by window,
so memory stays bounded for large orthophotos.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyproj
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import Affine, from_gcps
from rasterio.windows import Window

from gps_denied_nav.core.geodesy import LocalTangentPlane

# Output pixels between exact geodesy nodes. Odd, so that cv2.resize (which aligns pixel centres) puts
# node j exactly on output pixel j * step after a crop of (step - 1) / 2 pixels.
_NODE_STEP_PX = 15
_BLOCK_ROWS = 17 * _NODE_STEP_PX
_MAX_SOURCE_SPAN_PX = 16000  # cv2.remap addresses its source with 16-bit integers


class GeoreferenceError(ValueError):
    """A raster that cannot be placed on the Earth: unreadable, or lacking a CRS or geotransform."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True, eq=False)
class MapRaster:
    """North-up map in ENU: column -> east, row -> south; pixel centres at (col + 0.5, row + 0.5) * gsd.

    image_rgb: [H, W, 3] uint8; valid: [H, W] bool (False = nodata or outside the source).
    """

    image_rgb: np.ndarray
    valid: np.ndarray
    gsd_m: float
    east_min_m: float
    north_max_m: float
    frame: LocalTangentPlane
    source: str = ""

    def __post_init__(self):
        if self.image_rgb.ndim != 3 or self.image_rgb.shape[2] != 3 or self.image_rgb.dtype != np.uint8:
            raise ValueError(f"image_rgb must be uint8 [H, W, 3], got {self.image_rgb.dtype} {self.image_rgb.shape}")
        if self.valid.shape != self.image_rgb.shape[:2]:
            raise ValueError(f"valid {self.valid.shape} does not match image {self.image_rgb.shape[:2]}")

    @property
    def height_px(self) -> int:
        return int(self.image_rgb.shape[0])

    @property
    def width_px(self) -> int:
        return int(self.image_rgb.shape[1])

    @property
    def width_m(self) -> float:
        return self.width_px * self.gsd_m

    @property
    def height_m(self) -> float:
        return self.height_px * self.gsd_m

    @property
    def east_max_m(self) -> float:
        return self.east_min_m + self.width_m

    @property
    def north_min_m(self) -> float:
        return self.north_max_m - self.height_m

    def pixel_to_enu(self, cols, rows) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (arrays [...], centre of pixel 0 is 0.0) -> (east_m, north_m)."""
        east_m = self.east_min_m + (np.asarray(cols, dtype=float) + 0.5) * self.gsd_m
        north_m = self.north_max_m - (np.asarray(rows, dtype=float) + 0.5) * self.gsd_m
        return east_m, north_m

    def enu_to_pixel(self, east_m, north_m) -> tuple[np.ndarray, np.ndarray]:
        """(east_m, north_m) arrays [...] -> fractional (cols, rows), inverse of ``pixel_to_enu``."""
        cols = (np.asarray(east_m, dtype=float) - self.east_min_m) / self.gsd_m - 0.5
        rows = (self.north_max_m - np.asarray(north_m, dtype=float)) / self.gsd_m - 0.5
        return cols, rows

    def pixel_from_enu_affine(self) -> np.ndarray:
        """[3x3] A with [col, row, 1] = A @ [east_m, north_m, 1]; ``A[:2]`` is a cv2.warpAffine matrix."""
        g = self.gsd_m
        return np.array([[1.0 / g, 0.0, -self.east_min_m / g - 0.5],
                         [0.0, -1.0 / g, self.north_max_m / g - 0.5],
                         [0.0, 0.0, 1.0]])

    def enu_from_pixel_affine(self) -> np.ndarray:
        """[3x3] inverse of ``pixel_from_enu_affine``."""
        g = self.gsd_m
        return np.array([[g, 0.0, self.east_min_m + 0.5 * g],
                         [0.0, -g, self.north_max_m - 0.5 * g],
                         [0.0, 0.0, 1.0]])

    def crop_enu(self, east_min_m: float, north_min_m: float, east_max_m: float,
                 north_max_m: float) -> MapRaster:
        """Copy of the pixels covering the box, snapped outwards to whole pixels of this grid.

        Parts of the box outside this raster come back black with ``valid=False``, so a crop always
        covers the box it was asked for.
        """
        g = self.gsd_m
        c0 = math.floor((east_min_m - self.east_min_m) / g + 1e-9)
        c1 = math.ceil((east_max_m - self.east_min_m) / g - 1e-9)
        r0 = math.floor((self.north_max_m - north_max_m) / g + 1e-9)
        r1 = math.ceil((self.north_max_m - north_min_m) / g - 1e-9)
        if c1 <= c0 or r1 <= r0:
            raise ValueError("empty crop box")
        image = np.zeros((r1 - r0, c1 - c0, 3), np.uint8)
        valid = np.zeros((r1 - r0, c1 - c0), bool)
        sr0, sr1 = max(r0, 0), min(r1, self.height_px)
        sc0, sc1 = max(c0, 0), min(c1, self.width_px)
        if sr1 > sr0 and sc1 > sc0:
            image[sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0] = self.image_rgb[sr0:sr1, sc0:sc1]
            valid[sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0] = self.valid[sr0:sr1, sc0:sc1]
        return MapRaster(image, valid, g, self.east_min_m + c0 * g, self.north_max_m - r0 * g,
                         self.frame, self.source)


def load_geotiff(path, gsd_m: float | None = None, frame: LocalTangentPlane | None = None) -> MapRaster:
    """Read a georeferenced raster (any CRS rasterio/pyproj know) onto a north-up ENU grid.

    gsd_m: output pixel size in metres (default: the source's native one, see ``_native_gsd_m``).
    frame: ENU frame of the output (default: tangent plane at the raster centre, altitude 0).
    Bands 1-3 are read as RGB (one band: grey, or its palette); non-uint8 data is stretched linearly
    between its 0.5 and 99.5 percentiles. Nodata, alpha, masks and the outside of the source give
    ``valid=False``. Raises GeoreferenceError for unreadable files or ones without CRS/geotransform.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise GeoreferenceError(path, f"unreadable by rasterio ({exc})") from exc
    with ds:
        src_transform, src_crs = _georeference(ds, path)
        to_wgs84 = pyproj.Transformer.from_crs(src_crs, "EPSG:4326", always_xy=True)
        from_wgs84 = pyproj.Transformer.from_crs("EPSG:4326", src_crs, always_xy=True)
        if frame is None:
            lon, lat = to_wgs84.transform(*(src_transform @ (0.5 * ds.width, 0.5 * ds.height)))
            frame = LocalTangentPlane(float(lat), float(lon), 0.0)
        native_m = _native_gsd_m(ds, src_transform, src_crs, to_wgs84, frame)
        gsd_m = native_m if gsd_m is None else float(gsd_m)
        east_min, north_max, width, height = _enu_grid(ds, src_transform, to_wgs84, frame, gsd_m)
        col_nodes, row_nodes = _source_pixel_nodes(frame, from_wgs84, ~src_transform, gsd_m,
                                                   east_min, north_max, width, height)
        image = np.zeros((height, width, 3), np.uint8)
        valid = np.zeros((height, width), bool)
        reader = _WindowReader(ds, blur_sigma_px=0.5 * gsd_m / native_m if gsd_m > 1.25 * native_m else 0.0)
        chunk_nodes = max(16, min(270, int(_MAX_SOURCE_SPAN_PX * native_m / gsd_m / _NODE_STEP_PX)))
        for r0 in range(0, height, _BLOCK_ROWS):
            r1 = min(r0 + _BLOCK_ROWS, height)
            k0 = r0 // _NODE_STEP_PX
            for c0 in range(0, width, chunk_nodes * _NODE_STEP_PX):
                j0, c1 = c0 // _NODE_STEP_PX, min(c0 + chunk_nodes * _NODE_STEP_PX, width)
                rows = slice(k0, k0 + (r1 - r0 - 1) // _NODE_STEP_PX + 2)
                cols = slice(j0, j0 + (c1 - c0 - 1) // _NODE_STEP_PX + 2)
                out = reader.remap(col_nodes[rows, cols], row_nodes[rows, cols], r1 - r0, c1 - c0)
                if out is not None:
                    inside = out[..., 3:] == 255
                    np.multiply(out[..., :3], inside, out=image[r0:r1, c0:c1], casting="unsafe")
                    valid[r0:r1, c0:c1] = inside[..., 0]
    return MapRaster(image, valid, float(gsd_m), east_min, north_max, frame, str(path))


def _georeference(ds, path) -> tuple[Affine, pyproj.CRS]:
    """The source's pixel -> CRS affine and its CRS, from a geotransform or from GCPs."""
    gcps, gcp_crs = ds.gcps
    if ds.crs is not None and ds.transform != Affine.identity():
        return ds.transform, pyproj.CRS.from_wkt(ds.crs.to_wkt())
    if gcps and gcp_crs is not None:
        return from_gcps(gcps), pyproj.CRS.from_wkt(gcp_crs.to_wkt())
    missing = [name for name, absent in (("CRS", ds.crs is None),
                                          ("geotransform", ds.transform == Affine.identity())) if absent]
    raise GeoreferenceError(path, f"not georeferenced: no {' and no '.join(missing)} (nor GCPs)")


def _native_gsd_m(ds, transform, crs, to_wgs84, frame) -> float:
    """Source pixel size in metres: in CRS units for projected CRSs (so a 0.25 m UTM raster stays
    0.25 m rather than its 0.25008 m ground size), else on the ground at the raster centre (the finer
    of the pixel's two sides)."""
    if crs.is_projected and crs.axis_info and crs.axis_info[0].unit_conversion_factor:
        return float(math.sqrt(abs(transform.determinant)) * crs.axis_info[0].unit_conversion_factor)
    c, r = 0.5 * ds.width, 0.5 * ds.height
    xy = np.array([transform @ (c, r), transform @ (c + 1, r), transform @ (c, r + 1)])
    lon, lat = to_wgs84.transform(xy[:, 0], xy[:, 1])
    enu = frame.to_enu(lat, lon, 0.0)
    return float(min(np.linalg.norm(enu[1] - enu[0]), np.linalg.norm(enu[2] - enu[0])))


def _enu_grid(ds, transform, to_wgs84, frame, gsd_m) -> tuple[float, float, int, int]:
    """Output grid (east_min_m, north_max_m, width_px, height_px) covering the source outline."""
    s = np.linspace(0.0, 1.0, 65)
    cols = np.concatenate([s * ds.width, np.full_like(s, ds.width), s * ds.width, np.zeros_like(s)])
    rows = np.concatenate([np.zeros_like(s), s * ds.height, np.full_like(s, ds.height), s * ds.height])
    x, y = transform @ (cols, rows)
    lon, lat = to_wgs84.transform(x, y)
    enu = frame.to_enu(lat, lon, 0.0)
    # Snapping the grid to whole multiples of gsd keeps tile edges on round numbers.
    east_min = math.floor(enu[:, 0].min() / gsd_m) * gsd_m
    north_max = math.ceil(enu[:, 1].max() / gsd_m) * gsd_m
    width = math.ceil((enu[:, 0].max() - east_min) / gsd_m - 1e-6)
    height = math.ceil((north_max - enu[:, 1].min()) / gsd_m - 1e-6)
    return float(east_min), float(north_max), int(width), int(height)


def _source_pixel_nodes(frame, from_wgs84, pixel_from_src, gsd_m, east_min, north_max, width, height):
    """Exact source pixel coordinates (cv2 convention: pixel centres at integers) on the node grid."""
    node_cols = np.arange(0, width + 2 * _NODE_STEP_PX, _NODE_STEP_PX, dtype=float)
    node_rows = np.arange(0, height + 2 * _NODE_STEP_PX, _NODE_STEP_PX, dtype=float)
    cc, rr = np.meshgrid(node_cols, node_rows)
    east = east_min + (cc + 0.5) * gsd_m
    north = north_max - (rr + 0.5) * gsd_m
    lat, lon, _ = frame.to_geodetic(np.stack([east, north, np.zeros_like(east)], axis=-1))
    x, y = from_wgs84.transform(lon, lat)
    src_col, src_row = pixel_from_src @ (x, y)
    # Points pyproj cannot map (inf) go far outside the source, where remap reads nodata.
    return (np.nan_to_num(np.asarray(src_col) - 0.5, nan=-1e6, posinf=-1e6, neginf=-1e6),
            np.nan_to_num(np.asarray(src_row) - 0.5, nan=-1e6, posinf=-1e6, neginf=-1e6))


def _upsample_nodes(nodes: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Node grid [Kr, Kc] (spacing _NODE_STEP_PX) -> bilinear [rows, cols] with node (0, 0) at pixel (0, 0)."""
    s, half = _NODE_STEP_PX, (_NODE_STEP_PX - 1) // 2
    up = cv2.resize(nodes, (nodes.shape[1] * s, nodes.shape[0] * s), interpolation=cv2.INTER_LINEAR)
    return up[half:half + rows, half:half + cols]


class _WindowReader:
    """Reads the source window a block needs as RGB + mask uint8 [h, w, 4] and remaps it."""

    def __init__(self, ds, blur_sigma_px: float):
        self.ds = ds
        self.blur_sigma_px = blur_sigma_px
        self.margin_px = 2 + int(math.ceil(3.0 * blur_sigma_px))
        interp = ds.colorinterp
        self.palette = None
        if ds.count < 3 and interp and interp[0] == ColorInterp.palette:
            cmap = ds.colormap(1)
            self.palette = np.array([cmap.get(i, (0, 0, 0, 0))[:3] for i in range(256)], np.uint8)
        self.bands = [1, 2, 3] if ds.count >= 3 else [1]
        self.scale = None if ds.dtypes[0] == "uint8" else self._stretch()

    def _stretch(self) -> tuple[float, float]:
        step = max(1, max(self.ds.width, self.ds.height) // 1024)
        shape = (len(self.bands), max(1, self.ds.height // step), max(1, self.ds.width // step))
        data = self.ds.read(self.bands, out_shape=shape, masked=True).astype(float)
        values = data.compressed() if np.ma.is_masked(data) else data.ravel()
        lo, hi = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
        return float(lo), float(max(hi - lo, 1e-12))

    def remap(self, col_nodes: np.ndarray, row_nodes: np.ndarray, rows: int, cols: int) -> np.ndarray | None:
        """Sample the source at the pixels that node grids (float64) give -> uint8 [rows, cols, 4] or None."""
        m = self.margin_px
        # Bilinear interpolation stays within the nodes' range, so the nodes bound the window.
        c0 = max(int(math.floor(col_nodes.min())) - m, 0)
        c1 = min(int(math.ceil(col_nodes.max())) + m + 1, self.ds.width)
        r0 = max(int(math.floor(row_nodes.min())) - m, 0)
        r1 = min(int(math.ceil(row_nodes.max())) + m + 1, self.ds.height)
        if c1 <= c0 or r1 <= r0:
            return None
        window = Window(c0, r0, c1 - c0, r1 - r0)
        data = self.ds.read(self.bands, window=window)
        if self.scale is not None:
            lo, span = self.scale
            data = np.clip((data.astype(np.float32) - lo) * (255.0 / span), 0, 255).astype(np.uint8)
        if self.palette is not None:
            rgb = self.palette[data[0]]
        else:
            rgb = np.moveaxis(data, 0, -1) if len(self.bands) == 3 else np.repeat(data[0][..., None], 3, -1)
        src = np.dstack([rgb, self.ds.dataset_mask(window=window)])
        if self.blur_sigma_px > 0.0:
            src = cv2.GaussianBlur(src, (0, 0), self.blur_sigma_px)
        map_x = _upsample_nodes(col_nodes - c0, rows, cols).astype(np.float32)
        map_y = _upsample_nodes(row_nodes - r0, rows, cols).astype(np.float32)
        return cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
