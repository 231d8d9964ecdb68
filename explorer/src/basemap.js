// The offline background: Natural Earth country outlines shipped with the package, or the
// user's own MapLibre style (`serve --basemap-style URL`).

export function basemapStyle(config, assets) {
  if (config.basemap_style) return config.basemap_style;
  return {
    version: 8,
    sources: {
      countries: {
        type: "geojson",
        data: `${assets}/countries.geojson`,
        attribution: "Country outlines: Natural Earth (public domain)",
      },
    },
    layers: [
      { id: "background", type: "background", paint: { "background-color": "#dfe7ee" } },
      { id: "land", type: "fill", source: "countries", paint: { "fill-color": "#f6f5f1" } },
      { id: "borders", type: "line", source: "countries", paint: { "line-color": "#a9b2bc", "line-width": 0.8 } },
    ],
  };
}
