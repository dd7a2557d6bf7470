// Bundle the console's browser code and styles into ../frontend/dist with content-hashed names,
// and write dist/manifest.json (entry name -> file) that the server reads to link them.
// One bundle per kind: the pages share most code (formatting, live channel, charts), and a
// single ~60 kB script is cached once for every page. No source maps in the package.
import * as esbuild from "esbuild";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { console: "src/main.ts", style: "src/style.css" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020", "chrome90", "firefox90", "safari14"],
  outdir: out,
  entryNames: "[name]-[hash]",
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
});

const manifest = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  if (!meta.entryPoint) continue;
  const name = basename(file).replace(/-[A-Z0-9]+(\.\w+)$/, "$1");
  manifest[name] = basename(file);
}
writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log("console assets:", Object.values(manifest).join(", "));
