// Bundles src/softphone.js with livekit-client into ../static/softphone.js. The banner names the livekit-client
// version and a digest of the source and the lock file, so a test can tell a bundle not rebuilt after a change.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { build } from "esbuild";

const digest = createHash("sha256")
  .update(readFileSync("src/softphone.js"))
  .update(readFileSync("package-lock.json"))
  .digest("hex")
  .slice(0, 16);
const { version } = JSON.parse(readFileSync("node_modules/livekit-client/package.json", "utf8"));

await build({
  entryPoints: ["src/softphone.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  legalComments: "eof",
  banner: {
    js: `/* Switchboard console softphone: livekit-client ${version} (Apache-2.0), source ${digest}. `
      + "Built from orchestrator/console/web: npm ci && npm run build */",
  },
  outfile: "../static/softphone.js",
  logLevel: "info",
});
