// Bundle the explorer with esbuild into OUT_DIR: explorer.js (ESM) + explorer.css, the
// MapLibre worker beside it, the page, and THIRD_PARTY_LICENSES.txt listing every npm
// package whose code is in the bundle, with its licence text.
// Usage: node build/bundle.mjs OUT_DIR
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = resolve(process.argv[2]);

const result = await esbuild.build({
  entryPoints: [join(root, "src/main.js")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none", // collected in THIRD_PARTY_LICENSES.txt instead
  conditions: ["visgl:webgl-only"], // deck.gl's WebGL build, without WebGPU
  outfile: join(out, "explorer.js"),
  metafile: true,
  logLevel: "warning",
});
copyFileSync(join(root, "node_modules/maplibre-gl/dist/maplibre-gl-worker.mjs"), join(out, "maplibre-gl-worker.js"));
copyFileSync(join(root, "src/index.html"), join(out, "index.html"));

// The package owning each bundled input (node_modules/<name> or node_modules/@scope/<name>).
const packages = new Set(["maplibre-gl"]); // the worker is copied, not bundled
for (const input of Object.keys(result.metafile.inputs)) {
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//g);
  if (match) packages.add(match[match.length - 1].slice("node_modules/".length, -1));
}
const sections = [...packages].sort().map((name) => {
  const dir = join(root, "node_modules", name);
  const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const licenceFile = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
  const text = licenceFile ? readFileSync(join(dir, licenceFile), "utf8").trim() : `(no licence file; package.json says ${meta.license})`;
  return `${name} ${meta.version} (${meta.license})\n${"-".repeat(72)}\n${text}\n`;
});
const header = "Third-party code bundled in explorer.js and maplibre-gl-worker.js (npm packages, pinned by\n"
  + "explorer/package-lock.json), and data in countries.geojson: Natural Earth 1:110m Admin 0\n"
  + "countries (public domain, naturalearthdata.com) via world-atlas (ISC, below).\n\n";
const worldAtlas = join(root, "node_modules/world-atlas");
const atlas = existsSync(worldAtlas)
  ? `world-atlas 2.0.2 (ISC)\n${"-".repeat(72)}\n${readFileSync(join(worldAtlas, "LICENSE"), "utf8").trim()}\n` : "";
writeFileSync(join(out, "THIRD_PARTY_LICENSES.txt"), header + [...sections, atlas].join("\n"));
console.log(`bundled ${Object.keys(result.metafile.inputs).length} modules from ${packages.size} packages into ${out}`);
