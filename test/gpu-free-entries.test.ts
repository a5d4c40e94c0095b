// The package's GPU-free entries: `onecycle-gpu/schedules` and
// `onecycle-gpu/rangetest` must load and work in a process where the `webgpu`
// package cannot be resolved at all (someone else's training loop, no Dawn).
// A child process runs with a module hook that throws on any 'webgpu' import;
// the engine entry failing under the same hook proves the hook bites.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';

const ROOT = new URL('..', import.meta.url).pathname;
let dir: string;
let register: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gpu-free-'));
  writeFileSync(
    join(dir, 'block-webgpu.mjs'),
    `export async function resolve(specifier, context, next) {
  if (specifier === 'webgpu' || specifier.startsWith('webgpu/')) throw new Error('BLOCKED: import of webgpu from ' + context.parentURL);
  return next(specifier, context);
}
`,
  );
  register = join(dir, 'register.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister('./block-webgpu.mjs', import.meta.url);\n`);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs an ES module snippet from the repository root (so 'onecycle-gpu/…' resolves to this package) with webgpu blocked. */
function runBlocked(code: string): { status: number | null; stdout: string; stderr: string } {
  // registered after tsx, so this hook runs first and sees every specifier
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', pathToFileURL(register).href, '--input-type=module', '-e', code], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('GPU-free entries', () => {
  it("the hook bites: the engine entry ('onecycle-gpu') cannot load without webgpu", () => {
    const r = runBlocked(`await import('onecycle-gpu'); console.log('loaded');`);
    assert.notEqual(r.status, 0, `the engine loaded with webgpu blocked:\n${r.stdout}`);
    assert.match(r.stderr, /BLOCKED: import of webgpu/);
  });

  it("'onecycle-gpu/schedules' loads without webgpu and gives One Cycle's values", () => {
    const r = runBlocked(`
      import { oneCycle, rangeSweep, triangular } from 'onecycle-gpu/schedules';
      const c = oneCycle({ maxLr: 1, totalSteps: 100 });
      const p = oneCycle({ preset: 'pytorch', maxLr: 0.1, totalSteps: 10 });
      console.log(JSON.stringify({
        lr: [0, 45, 90, 99, 150].map(c.lr), momentum: [0, 45, 90].map(c.momentum),
        pytorch: [0, 3, 9].map(p.lr),
        sweep: rangeSweep({ start: 1e-4, end: 1, steps: 5 })(2),
        clr: triangular({ baseLr: 0.1, maxLr: 1, stepSize: 10 })(5),
      }));`);
    assert.equal(r.status, 0, `failed to load:\n${r.stderr}`);
    const v = JSON.parse(r.stdout) as { lr: number[]; momentum: number[]; pytorch: number[]; sweep: number; clr: number };
    // Smith's anchors for T=100 (schedules/oneCycle.ts): 0, 45, 90, 99
    assert.deepEqual(v.lr, [0.1, 1, 0.1, 0.001, 0.001]);
    assert.deepEqual(v.momentum, [0.95, 0.85, 0.95]);
    // torch 1.13's OneCycleLR(max_lr=0.1, total_steps=10) at steps 0, 3, 9, printed by PyTorch itself
    assert.deepEqual(v.pytorch, [0.0040000000000000036, 0.09504846320134738, 4e-7]);
    assert.ok(Math.abs(v.sweep - 1e-2) < 1e-12, String(v.sweep));
    assert.ok(Math.abs(v.clr - 0.55) < 1e-12, String(v.clr));
  });

  it("'onecycle-gpu/rangetest' runs a range test over a plain function without webgpu", () => {
    const r = runBlocked(`
      import { rangeTest, rangeTestPlot, rangeTestTermChart } from 'onecycle-gpu/rangetest';
      const r = await rangeTest({ startLr: 1e-5, endLr: 10, steps: 120,
        step: (lr) => 2 - 1 / (1 + (1e-3 / lr) ** 2) + (lr / 0.5) ** 4 });
      const svg = rangeTestPlot(r, r.suggestion);
      const chart = rangeTestTermChart(r, r.suggestion);
      console.log(JSON.stringify({ stoppedEarly: r.stoppedEarly, maxLr: r.suggestion?.maxLr ?? null, svg: svg.startsWith('<svg'), chart: chart.length > 0 }));`);
    assert.equal(r.status, 0, `failed:\n${r.stderr}`);
    const v = JSON.parse(r.stdout) as { stoppedEarly: boolean; maxLr: number | null; svg: boolean; chart: boolean };
    assert.ok(v.stoppedEarly && v.svg && v.chart, r.stdout);
    assert.ok(v.maxLr !== null && v.maxLr > 1e-3 && v.maxLr < 0.5, String(v.maxLr));
  });
});
