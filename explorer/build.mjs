// Bundles the explorer into dist/ (index.html, explorer.js, explorer.css) with esbuild:
// everything the pages use, the NEAR wallet libraries included, so they work offline.
import { build } from "esbuild";
import { copyFile, mkdir, stat } from "node:fs/promises";

const out = process.env.EXPLORER_OUT ?? "dist";
await mkdir(out, { recursive: true });
const result = await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022"],
  platform: "browser",
  outfile: `${out}/explorer.js`,
  legalComments: "none",
  metafile: true,
  // A browser has no Node built-ins; the JSON-schema validator @near-js/accounts bundles
  // for contract ABIs asks for `util` (formatting only).
  alias: { util: "./src/shims/util.js" },
  inject: ["./src/shims/buffer.js"],
  logLevel: "warning",
});
await copyFile("src/index.html", `${out}/index.html`);
await copyFile("src/style.css", `${out}/explorer.css`);
const size = (await stat(`${out}/explorer.js`)).size;
console.log(`explorer: ${out}/explorer.js ${(size / 1024).toFixed(1)} KiB (${Object.keys(result.metafile.inputs).length} modules)`);
