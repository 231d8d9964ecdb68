// Country outlines for the explorer's offline background: Natural Earth 1:110m Admin 0
// countries (public domain) from the world-atlas package (TopoJSON, ISC), converted to
// GeoJSON and split at the antimeridian so that flat maps draw no band across the world.
// Usage: node build/countries.mjs OUT.geojson
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { feature } from "topojson-client";

const require = createRequire(import.meta.url);
const DECIMALS = 3; // 110m data is ~0.1 degree: 3 decimals lose nothing visible

// Longitudes made continuous (no jump over 180 degrees between neighbours).
function unwrap(ring) {
  const out = [[ring[0][0], ring[0][1]]];
  for (let i = 1; i < ring.length; i++) {
    let lon = ring[i][0];
    const prev = out[i - 1][0];
    while (lon - prev > 180) lon -= 360;
    while (lon - prev < -180) lon += 360;
    out.push([lon, ring[i][1]]);
  }
  return out;
}

// Sutherland-Hodgman: the part of a closed ring on one side of the meridian x = X.
function clipHalf(ring, X, keepLeft) {
  const inside = (p) => (keepLeft ? p[0] <= X : p[0] >= X);
  const out = [];
  for (let i = 0; i < ring.length - 1; i++) {
    const a = ring[i], b = ring[i + 1];
    const cross = () => [X, a[1] + ((X - a[0]) * (b[1] - a[1])) / (b[0] - a[0])];
    if (inside(a)) {
      out.push(a);
      if (!inside(b)) out.push(cross());
    } else if (inside(b)) {
      out.push(cross());
    }
  }
  if (out.length) out.push(out[0]);
  return out;
}

// A ring, unwrapped, as pieces inside [-180, 180] (shifted back by multiples of 360).
function splitRing(ring) {
  let flat = unwrap(ring);
  const drift = flat[flat.length - 1][0] - flat[0][0];
  if (Math.abs(drift) > 180) { // encircles a pole (Antarctica): close the ring along it
    const poleLat = flat.reduce((s, p) => s + p[1], 0) / flat.length < 0 ? -90 : 90;
    const last = flat[flat.length - 1];
    flat = [...flat.slice(0, -1), last, [last[0], poleLat], [flat[0][0], poleLat], flat[0]];
  }
  const xs = flat.map((p) => p[0]);
  const lo = Math.floor((Math.min(...xs) + 180) / 360), hi = Math.ceil((Math.max(...xs) - 180) / 360);
  const pieces = [];
  for (let k = lo; k <= hi; k++) {
    let part = clipHalf(flat, -180 + 360 * k, false);
    part = part.length ? clipHalf(part, 180 + 360 * k, true) : part;
    if (part.length >= 4) pieces.push(part.map(([x, y]) => [x - 360 * k, y]));
  }
  return pieces;
}

const round = (v) => Math.round(v * 10 ** DECIMALS) / 10 ** DECIMALS;

function splitPolygon(rings) {
  const [outer, ...holes] = rings;
  return splitRing(outer).map((piece) => {
    const minX = Math.min(...piece.map((p) => p[0])), maxX = Math.max(...piece.map((p) => p[0]));
    const inPiece = holes.filter((h) => h.every((p) => p[0] >= minX && p[0] <= maxX));
    return [piece, ...inPiece].map((r) => r.map(([x, y]) => [round(x), round(y)]));
  });
}

const out = process.argv[2];
const world = JSON.parse(readFileSync(require.resolve("world-atlas/countries-110m.json"), "utf8"));
const features = feature(world, world.objects.countries).features.map((f) => {
  const polygons = f.geometry.type === "Polygon" ? [f.geometry.coordinates] : f.geometry.coordinates;
  return {
    type: "Feature",
    properties: { name: f.properties.name },
    geometry: { type: "MultiPolygon", coordinates: polygons.flatMap(splitPolygon) },
  };
});
writeFileSync(out, JSON.stringify({
  type: "FeatureCollection",
  properties: { source: "Natural Earth 1:110m Admin 0 countries v4.1.0 (public domain) via world-atlas 2.0.2" },
  features,
}));
console.log(`wrote ${features.length} countries to ${out}`);
