// Bundles the console into dist/: app.js (esbuild), index.html and app.css as they are.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

await rm("dist", { recursive: true, force: true });
await mkdir("dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: "dist/app.js",
  logLevel: "warning",
});
await copyFile("index.html", "dist/index.html");
await copyFile("src/app.css", "dist/app.css");
console.log("built dist/ (index.html, app.js, app.css)");
