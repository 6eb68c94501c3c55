"""Procedural demo world: a deterministic, plausible rural orthophoto written as a UTM GeoTIFF.

The demo and the tests need a map that behaves like real aerial imagery for NetVLAD and SIFT: fields with
row, mowing and tramline textures and colour variation, asphalt and gravel roads, mixed forest drawn crown
by crown, hedgerows, farmsteads with gable roofs, a river, silage bales and cast shadows; all of
it textured except water, as in the real world. The layout is drawn in metres from one seeded generator
into a material-id map, then composed band by band with vectorised numpy/cv2, so the default 2 x 1.5 km
world at 0.25 m takes seconds. It is written in the UTM zone of its origin, so loading it exercises the
real reprojection path (there, UTM grid north is about 1.3 degrees off true north).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pyproj
from rasterio.transform import Affine

from gps_denied_nav.core.geotiff_writer import write_geotiff  # noqa: F401  (public here too: world.write_geotiff)

# Provisioning options for maps the simulator renders its frames from: the map and the terrain are then the
# truth, with no registration or height error of their own (a real map's are set at provisioning).
SIMULATED_MAP_ERRORS = {"terrain_sigma_m": 0.0, "map_registration_sigma_m": 0.0}
SUN_AZIMUTH_DEG = 215.0  # clockwise from north: mid-afternoon sun in the south-west
SUN_ELEVATION_DEG = 40.0
_AZ, _EL = math.radians(SUN_AZIMUTH_DEG), math.radians(SUN_ELEVATION_DEG)
_SUN_ENU = np.array([math.sin(_AZ) * math.cos(_EL), math.cos(_AZ) * math.cos(_EL), math.sin(_EL)], np.float32)
# crop: (rgb, stripe_amp, stripe_period_m, tramline_amp, low_noise_amp, patch_noise_amp, probability)
_CROPS = {"cereal_ripe": ((196, 178, 118), 0.05, 3.0, 0.22, 0.08, 0.06, 0.20),
          "cereal_green": ((112, 138, 66), 0.05, 3.0, 0.25, 0.10, 0.06, 0.20),
          "grass_ley": ((94, 132, 58), 0.09, 6.0, 0.08, 0.10, 0.07, 0.22),
          "ploughed": ((116, 94, 72), 0.12, 1.0, 0.04, 0.12, 0.09, 0.10),
          "stubble": ((180, 166, 126), 0.08, 2.5, 0.15, 0.08, 0.07, 0.12),
          "rapeseed": ((204, 194, 76), 0.03, 3.0, 0.25, 0.07, 0.06, 0.05),
          "meadow": ((122, 132, 78), 0.0, 5.0, 0.0, 0.14, 0.12, 0.11)}
# surface: (rgb, low_noise_amp, patch_noise_amp)
_SURFACES = {"forest_floor": ((62, 72, 46), 0.1, 0.15), "verge": ((126, 134, 84), 0.08, 0.12),
             "ditch": ((76, 88, 58), 0.08, 0.12), "gravel": ((170, 158, 138), 0.06, 0.08),
             "asphalt": ((92, 94, 96), 0.05, 0.05), "water": ((46, 62, 64), 0.06, 0.02),
             "yard": ((156, 148, 130), 0.08, 0.1), "lawn": ((96, 126, 62), 0.08, 0.08),
             "bale": ((234, 234, 228), 0.0, 0.02)}
_ROOFS = [((164, 68, 54), (112, 44, 36)), ((116, 118, 122), (76, 78, 82)), ((60, 60, 64), (36, 36, 38)),
          ((182, 184, 186), (136, 138, 140)), ((124, 88, 66), (88, 60, 46))]
_CONIFER_RGB, _DECIDUOUS_RGB = np.array([34, 56, 38], np.float32), np.array([70, 100, 50], np.float32)


def generate_world(out_path, seed: int = 0, size_m: tuple[float, float] = (2000.0, 1500.0),
                   gsd_m: float = 0.25, origin_lat_deg: float = 60.40, origin_lon_deg: float = 22.46) -> Path:
    """Write a synthetic orthophoto GeoTIFF (UTM, north-up grid) centred on the origin; returns its path.
    size_m: (east, north) extent in metres; gsd_m: pixel size in metres. Same seed -> same pixels."""
    rng = np.random.default_rng(seed)
    width, height = int(round(size_m[0] / gsd_m)), int(round(size_m[1] / gsd_m))
    world = _World(rng, width, height, 1.0 / gsd_m)
    world.fields()
    world.river()
    roads = world.roads()
    buildings = world.farmsteads(roads)
    f = max(1, int(round(0.5 / gsd_m)))  # crowns and shadows at ~0.5 m: finer costs time, adds nothing
    canopy = world.canopy(f)
    shadow = _shadows(canopy, buildings, gsd_m * f, f, (height, width))
    canopy = cv2.resize(canopy, (width, height), interpolation=cv2.INTER_LINEAR)
    image = _compose(rng, world.ids, np.array(world.table, np.float32), canopy, shadow, gsd_m)
    crs = f"EPSG:{(32600 if origin_lat_deg >= 0 else 32700) + int((origin_lon_deg + 180.0) // 6.0) + 1}"
    x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(origin_lon_deg, origin_lat_deg)
    west, north = (round(v / gsd_m) * gsd_m for v in (x - 0.5 * width * gsd_m, y + 0.5 * height * gsd_m))
    return write_geotiff(out_path, image, crs, Affine(gsd_m, 0.0, west, 0.0, -gsd_m, north))


def _fix(points_px) -> np.ndarray:
    """Float pixel points -> int32 for cv2 drawing with shift=4 (1/16 px precision)."""
    return np.round(np.asarray(points_px, float) * 16.0).astype(np.int32)


def _box(centre, length_px, width_px, along) -> np.ndarray:
    """Corners [4, 2] of a rectangle with its length along the unit vector ``along``."""
    across = np.array([-along[1], along[0]])
    return np.array([centre + 0.5 * (sl * length_px * np.asarray(along) + sw * width_px * across)
                     for sl, sw in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


class _World:
    """Material-id map ``ids`` (uint8 [H, W], <= 256 materials) and canopy mask ``trees``, drawn in pixels."""

    def __init__(self, rng, width: int, height: int, px_per_m: float):
        self.rng, self.w, self.h, self.px = rng, width, height, px_per_m
        self.ids, self.trees = np.zeros((height, width), np.uint8), np.zeros((height, width), np.uint8)
        self.table: list[list[float]] = []
        self.mat = {name: self._material(rgb, lo=lo, mid=mid) for name, (rgb, lo, mid) in _SURFACES.items()}
        self.roofs = [(self._material(a, lo=0.02), self._material(b, lo=0.02)) for a, b in _ROOFS]

    def _material(self, rgb, stripe=0.0, period_m=1.0, angle=0.0, tram=0.0, lo=0.08, mid=0.05) -> int:
        """Add a table row: rgb, stripe amp/period_px/phase, cos, sin, tramline amp/spacing_px/phase, noise."""
        rng, px = self.rng, self.px
        rgb = np.asarray(rgb) * rng.uniform(0.92, 1.08) * rng.uniform(0.96, 1.04, 3)
        self.table.append([*rgb, stripe, max(period_m * px, 3.0), rng.uniform(0, 6.3), math.cos(angle),
                           math.sin(angle), tram, rng.uniform(16, 24) * px, rng.uniform(0, 24) * px, lo, mid])
        return len(self.table) - 1

    def poly(self, layer, pts, value):
        cv2.fillPoly(layer, [_fix(pts)], value, cv2.LINE_8, 4)

    def line(self, layer, pts, value, width_m):
        cv2.polylines(layer, [_fix(pts)], False, value, max(1, int(round(width_m * self.px))), cv2.LINE_8, 4)

    def disc(self, layer, centre, radius_m, value):
        cv2.circle(layer, tuple(int(v) for v in _fix(centre)), int(radius_m * self.px * 16), value, -1, cv2.LINE_8, 4)

    def wiggle(self, p0, p1, amp_m, n=400) -> tuple[np.ndarray, np.ndarray]:
        """Points [n, 2] (px) from p0 to p1 (fractions of the map size) meandering by ~amp_m; unit tangents."""
        p0, p1 = np.multiply(p0, (self.w, self.h)), np.multiply(p1, (self.w, self.h))
        t, d, rng = np.linspace(0.0, 1.0, n)[:, None], p1 - p0, self.rng
        off = sum(amp_m * self.px / k * np.sin(2 * np.pi * k * rng.uniform(0.4, 1.2) * t + rng.uniform(0, 6.3))
                  for k in (1, 2, 3))
        pts = p0 + t * d + off * np.array([-d[1], d[0]]) / np.linalg.norm(d)
        tangent = np.gradient(pts, axis=0)
        return pts, tangent / np.linalg.norm(tangent, axis=1, keepdims=True)

    def fields(self):
        """Elongated Voronoi parcels (forest where smooth random waves are high), hedgerows, ditches, silage
        bales and lone trees."""
        rng, px, angle, spacing = self.rng, self.px, self.rng.uniform(0, np.pi), 90.0 * self.px
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        to_field = np.diag([1 / 2.5, 1.0]) @ rot.T  # Voronoi in a squeezed frame: parcels 2.5x longer than wide
        corners = np.array([[0, 0], [self.w, 0], [0, self.h], [self.w, self.h]], float) @ to_field.T
        lo, hi = corners.min(0) - 2 * spacing, corners.max(0) + 2 * spacing
        gx, gy = np.meshgrid(np.arange(lo[0], hi[0], spacing), np.arange(lo[1], hi[1], spacing))
        seeds = np.column_stack([gx.ravel(), gy.ravel()]) + rng.uniform(-0.35, 0.35, (gx.size, 2)) * spacing
        subdiv = cv2.Subdiv2D(tuple(int(v) for v in (*(lo - spacing), *(hi - lo + 3 * spacing))))
        subdiv.insert([tuple(map(float, p)) for p in seeds])
        facets, centres = subdiv.getVoronoiFacetList([])
        back, edges, crop_mats = np.linalg.inv(to_field), set(), []
        k, theta, phase = 2 * np.pi / (700 * px) * rng.uniform(0.6, 1.4, 6), rng.uniform(0, 3, 6), rng.uniform(0, 6, 6)
        for facet, centre in zip(facets, centres):
            poly, c, cell_angle = facet.astype(float) @ back.T, back @ centre, angle + rng.normal(0, 0.05)
            if np.cos(k * (np.cos(theta) * c[0] + np.sin(theta) * c[1]) + phase).sum() > 0.95:
                name, mat = "forest", self.mat["forest_floor"]
                self.poly(self.trees, poly, 255)
            else:
                name = str(rng.choice(list(_CROPS), p=[c[-1] for c in _CROPS.values()]))
                rgb, stripe, period, tram, lo_amp, mid_amp, _ = _CROPS[name]
                # ids are uint8: very large worlds reuse earlier parcels' looks. Rows run lengthwise.
                mat = self._material(rgb, stripe, period, cell_angle + np.pi / 2, tram, lo_amp, mid_amp) \
                    if len(self.table) < 250 else crop_mats[rng.integers(len(crop_mats))]
                crop_mats.append(mat)
            self.poly(self.ids, poly, mat)
            for _ in range(rng.integers(8, 30) if name in ("grass_ley", "stubble") and rng.random() < 0.4 else 0):
                row = np.array([math.cos(cell_angle), math.sin(cell_angle)])  # silage bales along the rows
                self.disc(self.ids, c + (rng.uniform(-40, 40) * row + rng.normal(0, 6, 2)) * px, 0.75, self.mat["bale"])
            edges.update(tuple(sorted((tuple(np.round(p, 1)), tuple(np.round(q, 1)))))
                         for p, q in zip(poly, np.roll(poly, -1, axis=0)))
        for edge, u in zip(sorted(edges), rng.random(len(edges))):
            if u < 0.3:
                self.line(self.trees, np.array(edge), 255, rng.uniform(3.0, 7.0))  # hedgerow
            elif u < 0.7:
                self.line(self.ids, np.array(edge), self.mat["ditch" if u < 0.45 else "verge"], rng.uniform(1, 3))
        for _ in range(int(self.w * self.h / px**2 / 40_000)):  # lone trees
            self.disc(self.trees, rng.uniform(0, 1, 2) * (self.w, self.h), rng.uniform(2.5, 5), 255)

    def roads(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """An asphalt road west-east and gravel roads north-south, cleared of trees: (points, tangents)."""
        rng = self.rng
        roads = [(self.wiggle((-0.1, rng.uniform(0.3, 0.7)), (1.1, rng.uniform(0.3, 0.7)), 60.0), 7.0, "asphalt")]
        roads += [(self.wiggle((x, -0.1), (x + rng.uniform(-0.2, 0.2), 1.1), 40.0), rng.uniform(3.5, 5.0), "gravel")
                  for x in np.linspace(0.15, 0.85, 3) + rng.uniform(-0.08, 0.08, 3)]
        for (pts, _), width_m, name in roads:
            self.line(self.trees, pts, 0, width_m + 8.0)
            self.line(self.ids, pts, self.mat["verge"], width_m + 3.0)
            self.line(self.ids, pts, self.mat[name], width_m)
        return [road for road, _, _ in roads]

    def river(self):
        """A meandering river, 12-20 m wide, with riparian trees along most of it."""
        rng = self.rng
        river, _ = self.wiggle((rng.uniform(0.2, 0.8), -0.1), (rng.uniform(0.2, 0.8), 1.1), 90.0)
        for chunk in (c for c in np.array_split(river, 20) if rng.random() < 0.6):
            self.line(self.trees, chunk, 255, 30.0)
        width_m = rng.uniform(12.0, 20.0)
        self.line(self.trees, river, 0, width_m)
        self.line(self.ids, river, self.mat["water"], width_m)

    def farmsteads(self, roads) -> list[tuple[np.ndarray, float]]:
        """Yards beside roads with 2-5 gable-roofed buildings; returns (outline in 1/16 px, height_m) each."""
        rng, px, size, sun = self.rng, self.px, np.array([self.w, self.h]), _SUN_ENU[:2] * (1, -1)  # image axes
        spots = [(pts[i], along[i]) for pts, along in roads
                 for i in np.flatnonzero(np.all((pts > 0.05 * size) & (pts < 0.95 * size), axis=1))]
        buildings = []
        for _ in range(max(2, int(self.w * self.h / px**2 / 250_000))):
            at, along = spots[rng.integers(len(spots))]
            across = np.array([-along[1], along[0]]) * rng.choice([-1, 1])
            centre = at + across * rng.uniform(35, 50) * px
            self.line(self.ids, [at, centre], self.mat["gravel"], 3.5)
            for name, (length_m, width_m) in (("lawn", (80, 70)), ("yard", (48, 40))):
                for layer, value in ((self.trees, 0), (self.ids, self.mat[name])):
                    self.poly(layer, _box(centre, length_m * px, width_m * px, along), value)
            for _ in range(rng.integers(4, 12)):
                self.disc(self.trees, centre + rng.uniform(-38, 38, 2) * px, rng.uniform(3, 6), 255)
            for j in range(rng.integers(2, 6)):  # a house first, then barns and sheds
                size_m = rng.uniform((10, 7), (14, 9)) if j == 0 else rng.uniform((12, 8), (26, 13))
                spot = centre + ((j % 3 - 1) * 19 * along + (j // 3 - 0.5) * 18 * across + rng.normal(0, 1.5, 2)) * px
                ridge = along if rng.random() < 0.7 else across
                side, (lit, dark) = np.array([-ridge[1], ridge[0]]), self.roofs[rng.integers(len(self.roofs))]
                for s in (-1, 1):  # gable roof: the half facing the sun is the bright one
                    half = _box(spot + s * 0.25 * size_m[1] * px * side, size_m[0] * px, 0.5 * size_m[1] * px, ridge)
                    self.poly(self.ids, half, lit if s * np.dot(side, sun) > 0 else dark)
                outline = _box(spot, size_m[0] * px, size_m[1] * px, ridge)
                self.poly(self.trees, outline, 0)
                buildings.append((_fix(outline), rng.uniform(4.0, 9.0)))
        return buildings

    def canopy(self, f: int) -> np.ndarray:
        """Canopy height (m) on an f-times coarser grid, float32 [H // f, W // f]: a dome per crown."""
        rng, px, h, w = self.rng, self.px / f, self.h // f, self.w // f
        trees = cv2.resize(self.trees, (w, h), interpolation=cv2.INTER_AREA)
        canopy, crowns = np.zeros((h, w), np.float32), np.empty((h, w), np.float32)
        for spacing_m, sigma_m, height_m in ((3.0, 0.9, 17.0), (5.5, 1.7, 14.0)):  # conifer, deciduous
            xs, ys = (rng.integers(0, n, int(w * h / (spacing_m * px) ** 2)) for n in (w, h))
            keep = trees[ys, xs] > 127
            crowns[:] = 0.0
            crowns[ys[keep], xs[keep]] = rng.uniform(0.6, 1.0, keep.sum()) * height_m * 2 * np.pi * (sigma_m * px) ** 2
            cv2.GaussianBlur(crowns, (0, 0), sigma_m * px, dst=crowns)
            # Crowns that Poisson sampling put close together add up; a soft cap keeps trees tree-sized.
            np.exp(np.multiply(crowns, -1.0 / height_m, out=crowns), out=crowns)
            np.maximum(canopy, (1.0 - crowns) * (1.3 * height_m), out=canopy)
        return canopy


def _shadows(canopy_m: np.ndarray, buildings, gsd_m: float, f: int, shape_px) -> np.ndarray:
    """Cast-shadow strength uint8 ``shape_px`` (255 = full shadow) of trees and buildings, traced on the
    canopy grid (``gsd_m``, f times coarser than the map) and upsampled."""
    heights = canopy_m.copy()
    for outline, height_m in buildings:
        cv2.fillPoly(heights, [np.round(outline / f).astype(np.int32)], float(height_m), cv2.LINE_8, 4)
    occluder, tmp, (h, w), tan_el = np.zeros_like(heights), np.empty_like(heights), heights.shape, math.tan(_EL)
    for dist_px in np.arange(1.0, heights.max() / tan_el / gsd_m + 1.0, max(1.0, 1.0 / gsd_m)):
        ox, oy = int(round(dist_px * math.sin(_AZ))), int(round(-dist_px * math.cos(_AZ)))  # towards the sun
        src = heights[max(oy, 0):h + min(oy, 0), max(ox, 0):w + min(ox, 0)]
        dst = occluder[max(-oy, 0):h + min(-oy, 0), max(-ox, 0):w + min(-ox, 0)]
        t = np.subtract(src, dist_px * gsd_m * tan_el, out=tmp[:src.shape[0], :src.shape[1]])
        np.maximum(dst, t, out=dst)
    strength = cv2.GaussianBlur(np.clip((occluder - heights - 0.3) * 255.0, 0, 255), (0, 0), 0.6).astype(np.uint8)
    return cv2.resize(strength, (shape_px[1], shape_px[0]), interpolation=cv2.INTER_LINEAR)


class _Noise:
    """Smooth noise (~``cell_px`` cells) made band by band yet seamless: a band is a cv2.resize by f of a slice of
    a 1/f-resolution base, which maps output row r to base row (r + 0.5) / f - 0.5 (+2) whatever the slice."""

    def __init__(self, rng, shape_px, cell_px: float):
        self.f = f = max(1, min(8, int(round(cell_px))))
        k = max(1, int(round(cell_px / f)))  # grid cells are k base pixels
        grid = rng.standard_normal((shape_px[0] // (k * f) + 6, shape_px[1] // (k * f) + 6)).astype(np.float32)
        base = cv2.resize(grid, (grid.shape[1] * k, grid.shape[0] * k), interpolation=cv2.INTER_CUBIC)
        self.base = np.ascontiguousarray(base[:shape_px[0] // f + 6, :shape_px[1] // f + 6])

    def band(self, r0: int, r1: int, width: int) -> np.ndarray:
        f, g0 = self.f, r0 // self.f
        sub = self.base[g0:r1 // f + 6]
        up = cv2.resize(sub, (sub.shape[1] * f, sub.shape[0] * f), interpolation=cv2.INTER_CUBIC)
        return up[r0 - g0 * f + 2 * f:r1 - g0 * f + 2 * f, 2 * f:2 * f + width]


def _compose(rng, ids, table, canopy_m, shadow, gsd_m, band_rows: int = 256) -> np.ndarray:
    """Materials + textures + canopy (hill-shaded crowns) + cast shadows + grain -> uint8 [H, W, 3]."""
    (h, w), px = ids.shape, 1.0 / gsd_m
    luts = np.zeros((table.shape[1], 256), np.float32)
    luts[:, :len(table)] = table.T
    low, mid, fine, hue, species = (_Noise(rng, (h, w), c * px) for c in (40.0, 2.5, 0.8, 90.0, 60.0))
    sun = _SUN_ENU
    x, out = np.arange(w, dtype=np.float32), np.empty((h, w, 3), np.uint8)
    for r0 in range(0, h, band_rows):
        r1 = min(r0 + band_rows, h)
        p = [cv2.LUT(ids[r0:r1], lut) for lut in luts]
        u = p[6] * x + p[7] * np.arange(r0, r1, dtype=np.float32)[:, None]  # along the stripe normal (px)
        shade = np.sin(u * (2 * np.pi) / p[4] + p[5]) * p[3]
        d = (np.abs(np.mod(u + p[10], p[9]) - 0.5 * p[9]) - 0.9 * px) * (1.0 / (0.3 * px))  # tramline tracks
        shade -= p[8] * np.exp(-d * d)
        # Sparse sharp-edged patches (weeds, wet soil, stones) are what SIFT finds in a real field.
        grain = fine.band(r0, r1, w)
        patches = np.maximum(grain - 1.0, 0) * -2.5 + np.maximum(-1.3 - grain, 0) * 2.0 + mid.band(r0, r1, w)
        shade += p[11] * low.band(r0, r1, w) + p[12] * patches + 1.0
        # Crowns: hill-shading from the canopy slope (Sobel on a 1-row margin keeps bands seamless).
        m0, m1 = max(r0 - 1, 0), min(r1 + 1, h)
        gx, gy = (cv2.Sobel(canopy_m[m0:m1], cv2.CV_32F, dx, 1 - dx)[r0 - m0:r1 - m0] / (8.0 * gsd_m) for dx in (1, 0))
        lambert = np.clip((gy * sun[1] - gx * sun[0] + sun[2]) / np.sqrt(gx * gx + gy * gy + 1) / sun[2], 0.25, 1.5)
        lambert *= np.clip(1.0 + 0.25 * grain, 0.5, 1.6)  # leaves
        t = np.clip(species.band(r0, r1, w) * 0.6 + 0.5, 0, 1)
        alpha = np.clip(canopy_m[r0:r1] * 0.5, 0, 1)
        light = 1.0 - (0.55 / 255.0) * shadow[r0:r1].astype(np.float32)  # shadows keep 45 % (sky light)
        tint, noise = hue.band(r0, r1, w) * 8.0, (rng.random((r1 - r0, w), dtype=np.float32) - 0.5) * 10.0
        planes = []
        for k, hue_gain in enumerate((1.0, 0.3, -0.8)):
            tree = (_CONIFER_RGB[k] + (_DECIDUOUS_RGB[k] - _CONIFER_RGB[k]) * t) * lambert
            ground = p[k] * shade + tint * hue_gain
            planes.append((ground + (tree - ground) * alpha) * light)
        # Aerial haze: real orthophotos are less saturated and a little lifted in the shadows.
        grey = (planes[0] + planes[1] + planes[2]) * 0.06 + 12.0 + noise
        for k in range(3):
            out[r0:r1, :, k] = np.clip(planes[k] * 0.72 + grey, 0, 255)
    return out
