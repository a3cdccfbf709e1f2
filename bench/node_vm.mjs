// The same CODE step in a fresh Node vm context per run, inside one warm node process: the
// context gets the globals flowd gives a step. Prints "median_us p99_us".
// Usage: node node_vm.mjs STEP.mjs INPUTS_JSON RUNS
import vm from 'node:vm';
import { readFileSync } from 'node:fs';

const [, , stepPath, inputsJson, runsText] = process.argv;
const source = readFileSync(stepPath, 'utf8').replace(/^export\s+/gm, '') + '\n;code(inputs);\n';
const runs = Number(runsText);
const times = [];
for (let i = -Math.floor(runs / 10); i < runs; i++) {
  const t0 = process.hrtime.bigint();
  const context = vm.createContext({
    inputs: JSON.parse(inputsJson), console, setTimeout, clearTimeout, fetch, atob, btoa, crypto,
  });
  const out = JSON.stringify(await new vm.Script(source).runInContext(context));
  const t1 = process.hrtime.bigint();
  if (!out.includes('110')) throw new Error('unexpected output ' + out);
  if (i >= 0) times.push(Number(t1 - t0) / 1000);
}
times.sort((a, b) => a - b);
console.log(times[runs >> 1].toFixed(1), times[Math.round((runs - 1) * 0.99)].toFixed(1));
