// The rsembed-db map explorer: stored cells coloured by their embeddings, similarity
// search by click, positive / negative examples saved as label sets, text search for
// text-image models and a change view between two years. It only calls the public HTTP API.
import * as maplibregl from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
import { MapboxOverlay } from "@deck.gl/mapbox";
import { isValidCell } from "h3-js";

import "./explorer.css";
import * as api from "./api.js";
import { basemapStyle } from "./basemap.js";
import { CHANGE, NEAR_FAR, change as changeColour, faded, gradient, nearFar } from "./colours.js";
import { cellLayers } from "./layers.js";

const ASSETS = "/explore/static";
// MapLibre 6 is ESM-only and runs its worker from a separate module file beside this bundle.
maplibregl.setWorkerUrl(`${ASSETS}/maplibre-gl-worker.js`);

const CONFIG = JSON.parse(document.getElementById("rsembed-config").textContent || "{}");
const MAX_CELLS = 20000; // cells drawn per view, over all pages
const $ = (id) => document.getElementById(id);

const state = {
  tables: [],
  table: null, // /v1/tables/{name}
  mode: "similar", // or "change"
  cells: [],
  change: [],
  results: [],
  query: null,
  labels: new Map(), // key -> place with .label
  mark: "inspect",
  draw: { active: false, points: [], closed: false },
  flash: null,
  version: 0,
  zoom: 0,
  generation: 0,
  lastSearch: null,
  lastChange: null,
  loaded: false,
};

// ---------------------------------------------------------------- map
const map = new maplibregl.Map({
  container: "map",
  style: basemapStyle(CONFIG, ASSETS),
  center: [10, 30],
  zoom: 1.3,
  boxZoom: false, // shift+click marks a positive example
  dragRotate: false,
  pitchWithRotate: false,
  attributionControl: { compact: false },
});
map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
const overlay = new MapboxOverlay({
  interleaved: false,
  layers: [],
  getTooltip: ({ object }) => object && tooltip(object),
});
map.addControl(overlay);

function redraw() {
  state.version += 1;
  state.zoom = map.getZoom();
  overlay.setProps({ layers: cellLayers(state) });
}

function tooltip(place) {
  const id = place.h3 || place.tile_id;
  const distance = place.distance === undefined ? "" : `\ndistance ${place.distance.toFixed(4)}`;
  return { text: `${id}${distance}`, style: { fontSize: "12px", padding: "4px 6px" } };
}

// ---------------------------------------------------------------- helpers
function setStatus(text, kind = "info") {
  const el = $("status");
  el.textContent = text;
  el.dataset.kind = kind;
}

function report(error, what) {
  if (error instanceof api.ApiError && error.status === 401) {
    openKeyDialog(`${what}: ${error.message}`);
  }
  setStatus(`${what}: ${error.message}`, "error");
}

function outerRing(geometry) {
  if (!geometry) return null;
  if (geometry.type === "Polygon") return geometry.coordinates[0];
  if (geometry.type === "MultiPolygon") return geometry.coordinates[0][0];
  return null;
}

// A stored row as the layers and the list use it: h3 (hex) or a footprint polygon.
function place(properties, geometry) {
  return { ...properties, polygon: properties.h3 ? null : outerRing(geometry) };
}

function viewBbox() {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const west = b.getEast() - b.getWest() >= 360 ? -180 : clamp(b.getWest(), -180, 180);
  const east = b.getEast() - b.getWest() >= 360 ? 180 : clamp(b.getEast(), -180, 180);
  return [west, clamp(b.getSouth(), -90, 90), east, clamp(b.getNorth(), -90, 90)].map((v) => +v.toFixed(6));
}

function timeFilter() {
  const value = $("window").value;
  if (value.startsWith("year:")) return { year: Number(value.slice(5)) };
  if (value.startsWith("window:")) {
    const [start, end] = value.slice(7).split("/");
    return { start, end };
  }
  return {};
}

function searchFilters() {
  const filters = { ...timeFilter() };
  if ($("in-view").checked) filters.bbox = viewBbox();
  if (state.draw.closed) filters.polygon = { type: "Polygon", coordinates: [state.draw.points] };
  const parent = $("h3-parent").value.trim();
  if (parent) {
    if (!isValidCell(parent)) throw new api.ApiError(422, "filters.h3_parent", `not a valid H3 cell id: ${parent}`);
    filters.h3_parent = parent;
  }
  return filters;
}

const fmt = (d) => String(Number(d.toPrecision(3)));
const kValue = () => Number($("k").value);
const labelSet = () => $("label-set").value.trim();

// ---------------------------------------------------------------- tables
async function loadTables() {
  let answer;
  try {
    answer = await api.get("/v1/tables");
  } catch (error) {
    report(error, "tables");
    return;
  }
  state.tables = answer.tables;
  const select = $("table");
  select.replaceChildren(...state.tables.map((t) => new Option(`${t.name} (${t.rows} rows, ${t.dim}-d)`, t.name)));
  if (!state.tables.length) {
    setStatus("No stored tables yet: ingest a region first (rsembed-db ingest ...).");
    return;
  }
  await selectTable(state.tables[0].name);
}

async function selectTable(name) {
  try {
    state.table = await api.get(`/v1/tables/${encodeURIComponent(name)}`);
  } catch (error) {
    report(error, `table ${name}`);
    return;
  }
  const table = state.table;
  const years = table.years.map((y) => new Option(`${y}`, `year:${y}`));
  const windows = table.windows.map((w) => new Option(`${w.start} to ${w.end} (${w.rows})`, `window:${w.start}/${w.end}`));
  const select = $("window");
  const byYear = document.createElement("optgroup");
  byYear.label = "Year";
  byYear.append(...years);
  const byWindow = document.createElement("optgroup");
  byWindow.label = "Window [start, end)";
  byWindow.append(...windows);
  select.replaceChildren(new Option("All windows", "all"), byYear, byWindow);
  // Default: the year with the most rows (the latest among equals).
  const rows = new Map();
  for (const w of table.windows) rows.set(w.year, (rows.get(w.year) || 0) + w.rows);
  const best = [...rows.entries()].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0];
  select.value = best ? `year:${best[0]}` : "all";
  for (const id of ["from-year", "to-year"]) $(id).replaceChildren(...table.years.map((y) => new Option(`${y}`, `${y}`)));
  if (table.years.length) {
    $("from-year").value = `${table.years[0]}`;
    $("to-year").value = `${table.years[table.years.length - 1]}`;
  }
  $("mode-change").disabled = table.years.length < 2;
  $("mode-change").title = table.years.length < 2 ? "needs two stored years" : "";
  $("text-search").hidden = !table.text_search;
  clearResults();
  if (table.extent) {
    map.fitBounds([[table.extent[0], table.extent[1]], [table.extent[2], table.extent[3]]], { padding: 40, duration: 0 });
  }
  await loadLabels();
  await refresh();
}

// ---------------------------------------------------------------- cells and change
async function refresh() {
  if (!state.table) return;
  if (state.mode === "change") await loadChange();
  else await loadCells();
}

async function loadCells() {
  const generation = ++state.generation;
  const params = { table: state.table.name, bbox: viewBbox().join(","), ...timeFilter() };
  state.cellsQuery = params;
  const cells = [];
  let offset = 0;
  let total = 0;
  setStatus("Loading cells...");
  try {
    while (offset !== null && cells.length < MAX_CELLS) {
      const page = await api.get(`/v1/cells?${api.query({ ...params, offset })}`, "application/geo+json");
      if (generation !== state.generation) return;
      for (const feature of page.features) {
        const cell = place(feature.properties, feature.geometry);
        cell.faded = faded(cell.color);
        cells.push(cell);
      }
      total = page.properties.total;
      offset = page.properties.next_offset;
      state.cells = cells.slice();
      redraw();
    }
  } catch (error) {
    if (generation !== state.generation) return;
    state.cells = [];
    redraw();
    report(error, "cells");
    return;
  }
  state.loaded = true;
  const shown = cells.length < total ? `${cells.length} of ${total}` : `${total}`;
  setStatus(total ? `${shown} cells in view, coloured by their first three principal components.`
    : "No stored cells in this view and window.");
}

async function loadChange() {
  const generation = ++state.generation;
  const body = { table: state.table.name, from_year: Number($("from-year").value), to_year: Number($("to-year").value),
    filters: { bbox: viewBbox() } };
  state.lastChange = body;
  const rows = [];
  let offset = 0;
  let total = 0;
  setStatus("Loading change...");
  try {
    while (offset !== null && rows.length < MAX_CELLS) {
      const page = await api.post("/v1/change", { ...body, offset }, "application/geo+json");
      if (generation !== state.generation) return;
      rows.push(...page.features.map((f) => place(f.properties, f.geometry)));
      total = page.properties.total;
      offset = page.properties.next_offset;
    }
  } catch (error) {
    if (generation !== state.generation) return;
    state.change = [];
    redraw();
    report(error, "change");
    return;
  }
  const high = rows.reduce((m, r) => Math.max(m, r.distance), 0);
  for (const row of rows) row.rampColor = changeColour(high > 0 ? row.distance / high : 0);
  state.change = rows;
  state.loaded = true;
  showLegend(CHANGE, "0", fmt(high), `cosine distance ${body.from_year} \u2192 ${body.to_year}`);
  renderList(rows.slice(0, 100));
  redraw();
  setStatus(total ? `${total} places stored in both ${body.from_year} and ${body.to_year}; largest change first.`
    : `No place in view is stored in both ${body.from_year} and ${body.to_year}.`);
}

// ---------------------------------------------------------------- search
async function runSearch(request, what) {
  let body;
  try {
    body = { ...request, k: kValue(), filters: searchFilters() };
  } catch (error) {
    report(error, what);
    return;
  }
  if (!body.model) body.table = state.table.name;
  state.lastSearch = body;
  setStatus(`Searching (${what})...`);
  let answer;
  try {
    answer = await api.post("/v1/search", body);
  } catch (error) {
    report(error, what);
    return;
  }
  if (state.lastSearch !== body) return;
  let rows = answer.results.map((r) => place(r, r.geometry));
  const useThreshold = $("use-threshold").checked;
  const threshold = Number($("threshold").value);
  if (useThreshold) rows = rows.filter((r) => r.distance <= threshold);
  const low = rows.length ? rows[0].distance : 0;
  const high = rows.length ? rows[rows.length - 1].distance : 0;
  for (const row of rows) row.rampColor = nearFar(high > low ? (row.distance - low) / (high - low) : 0);
  state.results = rows;
  showLegend(NEAR_FAR, fmt(low), fmt(high), "cosine distance: near \u2192 far");
  renderList(rows);
  redraw();
  const cut = useThreshold ? ` within distance ${threshold}` : "";
  const over = answer.matched === null ? "" : ` over ~${answer.matched} matching rows`;
  setStatus(`${rows.length} nearest${cut} (${what}; ${answer.route} search${over}).`);
}

function searchCell(cell) {
  state.query = cell;
  runSearch({ key: cell.key }, `similar to ${cell.h3 || cell.tile_id}`);
}

function searchExamples() {
  const positives = [...state.labels.values()].filter((l) => l.label === "positive").map((l) => l.key);
  const negatives = [...state.labels.values()].filter((l) => l.label === "negative").map((l) => l.key);
  if (!positives.length) {
    setStatus("Mark at least one positive example (shift+click a cell).", "error");
    return;
  }
  state.query = null;
  runSearch({ positives, negatives }, `${positives.length} positive, ${negatives.length} negative examples`);
}

function searchText() {
  const text = $("text").value.trim();
  if (!text) return;
  state.query = null;
  runSearch({ model: state.table.models[0], text }, `text "${text}"`);
}

function clearResults() {
  state.results = [];
  state.query = null;
  state.flash = null;
  $("legend").hidden = true;
  renderList([]);
  redraw();
}

// ---------------------------------------------------------------- side list and legend
function renderList(rows) {
  const body = $("results").querySelector("tbody");
  body.replaceChildren(...rows.map((row, i) => {
    const tr = document.createElement("tr");
    tr.dataset.key = row.key || row.key_to;
    tr.dataset.id = row.h3 || row.tile_id;
    const swatch = `<i class="swatch" style="background:rgb(${row.rampColor.join(",")})"></i>`;
    tr.innerHTML = `<td>${row.rank ?? i + 1}</td><td>${swatch}${fmt(row.distance)}</td>`
      + `<td>${row.lon.toFixed(4)}, ${row.lat.toFixed(4)}</td><td class="id">${row.h3 || row.tile_id}</td>`;
    tr.title = `key ${tr.dataset.key}`;
    tr.addEventListener("click", () => flyTo(row));
    return tr;
  }));
  $("results").hidden = rows.length === 0;
}

function flyTo(row) {
  state.flash = row;
  redraw();
  map.flyTo({ center: [row.lon, row.lat], zoom: Math.max(map.getZoom(), 13), speed: 1.6 });
  for (const tr of $("results").querySelectorAll("tr.selected")) tr.classList.remove("selected");
  const tr = $("results").querySelector(`tr[data-id="${row.h3 || row.tile_id}"]`);
  if (tr) tr.classList.add("selected");
}

function showLegend(stops, low, high, title) {
  const legend = $("legend");
  legend.hidden = false;
  legend.querySelector(".bar").style.background = gradient(stops);
  $("legend-low").textContent = low;
  $("legend-high").textContent = high;
  $("legend-title").textContent = title;
}

// ---------------------------------------------------------------- labels
async function loadLabels() {
  state.labels = new Map();
  const set = labelSet();
  if (set && state.table) {
    try {
      const sets = await api.get("/v1/labels");
      if (!sets.sets.some((s) => s.name === set)) {
        updateCounts();
        redraw();
        return;
      }
      const collection = await api.get(`/v1/labels/${encodeURIComponent(set)}.geojson`, "application/geo+json");
      if (collection.properties.table !== state.table.name) {
        setStatus(`Label set ${set} belongs to table ${collection.properties.table}; pick another name.`, "error");
      } else {
        for (const f of collection.features) state.labels.set(f.properties.key, place(f.properties, f.geometry));
      }
    } catch (error) {
      if (!(error instanceof api.ApiError && error.status === 404)) report(error, `label set ${set}`);
    }
  }
  updateCounts();
  redraw();
}

function updateCounts() {
  const labels = [...state.labels.values()];
  const positives = labels.filter((l) => l.label === "positive").length;
  $("example-counts").innerHTML = `<b class="pos">${positives}</b> pos. \u00b7 `
    + `<b class="neg">${labels.length - positives}</b> neg.`;
  $("search-examples").disabled = positives === 0;
}

async function toggleLabel(cell, label) {
  const set = labelSet();
  if (!set) {
    setStatus("Name a label set first.", "error");
    return;
  }
  const held = state.labels.get(cell.key);
  const removing = held && held.label === label;
  if (removing) state.labels.delete(cell.key);
  else state.labels.set(cell.key, { ...cell, label });
  updateCounts();
  redraw();
  const id = cell.h3 || cell.tile_id;
  try {
    if (removing) await api.del(`/v1/labels/${encodeURIComponent(set)}/${encodeURIComponent(cell.key)}`);
    else await api.post(`/v1/labels/${encodeURIComponent(set)}`, { table: state.table.name, labels: [{ key: cell.key, label }] });
    setStatus(removing ? `Removed ${id} from label set ${set}.` : `Marked ${id} ${label} in label set ${set}.`);
  } catch (error) {
    setStatus(`Marked locally but not saved (labels need a write key): ${error.message}`, "error");
  }
}

async function exportLabels() {
  const set = labelSet();
  try {
    const collection = await api.get(`/v1/labels/${encodeURIComponent(set)}.geojson`, "application/geo+json");
    const url = URL.createObjectURL(new Blob([JSON.stringify(collection)], { type: "application/geo+json" }));
    const link = Object.assign(document.createElement("a"), { href: url, download: `${set}.geojson` });
    link.click();
    URL.revokeObjectURL(url);
  } catch (error) {
    report(error, `export ${set}`);
  }
}

// ---------------------------------------------------------------- polygon drawing
function startDrawing() {
  state.draw = { active: true, points: [], closed: false };
  map.doubleClickZoom.disable();
  map.getCanvas().style.cursor = "crosshair";
  $("draw").textContent = "Finish polygon";
  $("clear-polygon").disabled = false;
  setStatus("Click the map to add corners; click the first corner or Finish to close.");
  redraw();
}

function finishDrawing() {
  const points = state.draw.points;
  state.draw.active = false;
  map.doubleClickZoom.enable();
  map.getCanvas().style.cursor = "";
  $("draw").textContent = "Draw polygon";
  if (points.length < 3) {
    state.draw = { active: false, points: [], closed: false };
    setStatus("A polygon needs at least three corners.", "error");
  } else {
    state.draw = { active: false, points: [...points, points[0]], closed: true };
    setStatus("Polygon filter set: searches keep rows whose centre lies inside.");
  }
  redraw();
}

function addCorner(event) {
  const points = state.draw.points;
  if (points.length >= 3) {
    const first = map.project(points[0]);
    if (Math.hypot(first.x - event.point.x, first.y - event.point.y) < 10) {
      finishDrawing();
      return;
    }
  }
  points.push([event.lngLat.lng, event.lngLat.lat]);
  redraw();
}

// ---------------------------------------------------------------- clicks
const PICKABLE = ["cells-h3", "cells-tiles", "results-h3", "results-tiles", "change-h3", "change-tiles", "dots"];

map.on("click", (event) => {
  if (state.draw.active) {
    addCorner(event);
    return;
  }
  const info = overlay.pickObject({ x: event.point.x, y: event.point.y, radius: 1, layerIds: PICKABLE });
  if (!info || !info.object) return;
  const cell = info.object;
  if (state.mode === "change") {
    flyTo(cell);
    setStatus(`${cell.h3 || cell.tile_id}: cosine distance ${cell.distance.toFixed(4)} between the two years.`);
    return;
  }
  const original = event.originalEvent;
  const mark = original.shiftKey ? "positive" : original.altKey ? "negative" : state.mark;
  if (mark === "inspect") searchCell(cell);
  else toggleLabel(cell, mark);
});

// ---------------------------------------------------------------- key dialog
function openKeyDialog(reason = "") {
  const dialog = $("key-dialog");
  $("key-reason").textContent = reason;
  $("key-input").value = api.apiKey();
  if (!dialog.open) dialog.showModal();
}

$("key-dialog").addEventListener("close", () => {
  const choice = $("key-dialog").returnValue;
  if (choice === "save") api.setApiKey($("key-input").value.trim());
  if (choice === "clear") api.setApiKey("");
  updateKeyButton();
  if (choice === "save" || choice === "clear") loadTables();
});

function updateKeyButton() {
  const key = api.apiKey();
  $("key-button").textContent = key ? `Key \u2022\u2022${key.slice(-3)}` : "Key";
}

// ---------------------------------------------------------------- controls
function setMode(mode) {
  state.mode = mode;
  $("mode-similar").classList.toggle("active", mode === "similar");
  $("mode-change").classList.toggle("active", mode === "change");
  $("similar-controls").hidden = mode !== "similar";
  $("change-controls").hidden = mode !== "change";
  $("window").disabled = mode === "change";
  clearResults();
  state.change = [];
  refresh();
}

let moveTimer = null;
map.on("moveend", () => {
  if ((map.getZoom() < 9) !== (state.zoom < 9)) redraw(); // dots on or off
  clearTimeout(moveTimer);
  moveTimer = setTimeout(refresh, 250);
});

$("key-button").addEventListener("click", () => openKeyDialog());
$("table").addEventListener("change", (e) => selectTable(e.target.value));
$("window").addEventListener("change", () => {
  clearResults();
  refresh();
});
$("mode-similar").addEventListener("click", () => setMode("similar"));
$("mode-change").addEventListener("click", () => setMode("change"));
$("from-year").addEventListener("change", refresh);
$("to-year").addEventListener("change", refresh);
$("k").addEventListener("input", () => {
  $("k-value").textContent = $("k").value;
});
$("k").addEventListener("change", () => {
  if (state.lastSearch) rerun();
});
$("use-threshold").addEventListener("change", () => {
  $("threshold").disabled = !$("use-threshold").checked;
  if (state.lastSearch) rerun();
});
$("threshold").addEventListener("change", () => {
  if (state.lastSearch) rerun();
});
$("draw").addEventListener("click", () => (state.draw.active ? finishDrawing() : startDrawing()));
$("clear-polygon").addEventListener("click", () => {
  state.draw = { active: false, points: [], closed: false };
  map.doubleClickZoom.enable();
  $("draw").textContent = "Draw polygon";
  $("clear-polygon").disabled = true;
  redraw();
});
$("text-go").addEventListener("click", searchText);
$("text").addEventListener("keydown", (e) => e.key === "Enter" && searchText());
$("search-examples").addEventListener("click", searchExamples);
$("export-labels").addEventListener("click", exportLabels);
$("clear-examples").addEventListener("click", clearResults);
$("label-set").addEventListener("change", loadLabels);
for (const button of document.querySelectorAll("[data-mark]")) {
  button.addEventListener("click", () => {
    state.mark = button.dataset.mark;
    for (const b of document.querySelectorAll("[data-mark]")) b.classList.toggle("active", b === button);
  });
}

// Run the last kind of search again with the new k / threshold.
function rerun() {
  const last = state.lastSearch;
  const { k: _k, filters: _f, table: _t, ...request } = last;
  runSearch(request, "updated");
}

// For automated checks and the curious: the map and the state (read-only use).
window.rsembedExplorer = { map, overlay, state, busy: api.busy };

updateKeyButton();
map.on("load", () => {
  if (CONFIG.key_required && !api.apiKey()) openKeyDialog("This server needs an API key to read.");
  else loadTables();
});
