// One CODE step the way Activepieces runs code in UNSANDBOXED mode: a fresh node process
// loads the step's module, awaits code(inputs) and prints the output as JSON.
// Usage: node node_step.mjs STEP.mjs INPUTS_JSON
const [, , stepPath, inputsJson] = process.argv;
const { code } = await import(stepPath);
const out = await code(JSON.parse(inputsJson));
process.stdout.write(JSON.stringify(out) + '\n');
