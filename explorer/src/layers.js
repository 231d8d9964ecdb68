// deck.gl layers of the explorer. A place is drawn from its H3 id (H3HexagonLayer) or,
// for bbox / grid tiles, from its footprint polygon (PolygonLayer).
import { H3HexagonLayer } from "@deck.gl/geo-layers";
import { PathLayer, PolygonLayer, ScatterplotLayer } from "@deck.gl/layers";

import { NEGATIVE, POSITIVE, QUERY } from "./colours.js";

const DOTS_BELOW_ZOOM = 9;

// Zoomed far out: each place also as a dot of at least 3 pixels, in its colour.
function dots(state, highlighted) {
  const data = state.mode === "change" ? state.change : highlighted ? state.results : state.cells;
  return new ScatterplotLayer({ id: "dots", data, getPosition: (d) => [d.lon, d.lat], getRadius: 1,
    radiusMinPixels: 3, getFillColor: (d) => [...(d.rampColor || d.color), 255], pickable: true,
    updateTriggers: { getFillColor: state.version } });
}

// Two layers (H3 cells, other footprints) drawing `items` with the same accessors.
export function footprints(id, items, props) {
  const common = { extruded: false, lineWidthUnits: "pixels", ...props };
  return [
    new H3HexagonLayer({ id: `${id}-h3`, data: items.filter((d) => d.h3), getHexagon: (d) => d.h3, ...common }),
    new PolygonLayer({ id: `${id}-tiles`, data: items.filter((d) => !d.h3 && d.polygon), getPolygon: (d) => d.polygon,
      ...common }),
  ];
}

export function cellLayers(state) {
  const layers = polygonFill(state.draw); // under the cells, so results keep their colours
  const highlighted = state.mode === "similar" && state.results.length > 0;
  if (state.mode === "change") {
    layers.push(...footprints("change", state.change, {
      getFillColor: (d) => [...d.rampColor, 235], stroked: false, filled: true, pickable: true,
      updateTriggers: { getFillColor: state.version },
    }));
  } else {
    layers.push(...footprints("cells", state.cells, {
      getFillColor: (d) => (highlighted ? [...d.faded, 150] : [...d.color, 235]), stroked: false, filled: true,
      pickable: true, updateTriggers: { getFillColor: [state.version, highlighted] },
    }));
    if (highlighted) {
      layers.push(...footprints("results", state.results, {
        getFillColor: (d) => [...d.rampColor, 255], getLineColor: [255, 255, 255, 255], getLineWidth: 1.5,
        stroked: true, filled: true, pickable: true, updateTriggers: { getFillColor: state.version },
      }));
    }
  }
  if (state.query) {
    layers.push(...footprints("query", [state.query], {
      getLineColor: [...QUERY, 255], getLineWidth: 4, stroked: true, filled: false, pickable: false,
    }));
  }
  if (state.zoom < DOTS_BELOW_ZOOM) layers.push(dots(state, highlighted)); // cells too small to see
  const labelled = state.mode === "similar" ? [...state.labels.values()] : [];
  layers.push(...footprints("labels", labelled, {
    getLineColor: (d) => [...(d.label === "positive" ? POSITIVE : NEGATIVE), 255], getLineWidth: 3.5,
    stroked: true, filled: false, pickable: false, updateTriggers: { getLineColor: state.version },
  }));
  if (state.flash) {
    layers.push(...footprints("flash", [state.flash], {
      getLineColor: [20, 20, 20, 255], getLineWidth: 3, stroked: true, filled: false, pickable: false,
    }));
  }
  layers.push(...drawLayers(state.draw));
  return layers;
}

function polygonFill(draw) {
  return draw.closed ? [new PolygonLayer({ id: "polygon-fill", data: [draw.points], getPolygon: (d) => d,
    filled: true, stroked: false, getFillColor: [30, 100, 220, 40] })] : [];
}

// The polygon filter's outline: finished, or being drawn (path and vertices).
function drawLayers(draw) {
  if (draw.closed) {
    return [new PathLayer({ id: "polygon-outline", data: [draw.points], getPath: (d) => d, getColor: [30, 100, 220, 230],
      getWidth: 2, widthUnits: "pixels" })];
  }
  if (!draw.points.length) return [];
  return [
    new PathLayer({ id: "polygon-path", data: [draw.points], getPath: (d) => d, getColor: [30, 100, 220, 230],
      getWidth: 2, widthUnits: "pixels" }),
    new ScatterplotLayer({ id: "polygon-vertices", data: draw.points, getPosition: (d) => d, getRadius: 4,
      radiusUnits: "pixels", getFillColor: [255, 255, 255, 255], getLineColor: [30, 100, 220, 255], stroked: true,
      lineWidthUnits: "pixels", getLineWidth: 2 }),
  ];
}
