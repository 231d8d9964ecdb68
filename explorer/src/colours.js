// Colour ramps: search distance (near = warm and bright, far = cool and dark) and change.

function ramp(stops) {
  return (t) => {
    const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const f = x - i;
    return stops[i].map((v, c) => Math.round(v + (stops[i + 1][c] - v) * f));
  };
}

// Nearest first: yellow -> orange -> crimson -> violet -> deep blue.
export const NEAR_FAR = [[255, 230, 0], [255, 140, 0], [220, 40, 90], [120, 40, 170], [35, 40, 120]];
export const nearFar = ramp(NEAR_FAR);

// Little change -> much change: pale blue-grey -> teal -> amber -> red.
export const CHANGE = [[225, 232, 240], [110, 190, 200], [250, 190, 60], [230, 80, 40], [150, 0, 40]];
export const change = ramp(CHANGE);

export const css = (rgb) => `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
export const gradient = (stops) => `linear-gradient(to right, ${stops.map(css).join(", ")})`;

// A cell's own embedding colour, faded when results are shown on top of it.
export function faded(rgb) {
  const grey = 0.3 * rgb[0] + 0.59 * rgb[1] + 0.11 * rgb[2];
  return [0, 1, 2].map((c) => Math.round(0.2 * rgb[c] + 0.8 * (grey * 0.3 + 160)));
}

export const POSITIVE = [0, 170, 80];
export const NEGATIVE = [225, 30, 45];
export const QUERY = [0, 200, 255];
