// The kernel autotuner (kernels/autotune.ts) and the session's use of it
// (run/autotune.ts), forced on for this adapter: tiny shape classes timed on a few
// candidates, the cache written atomically and read back into the policy, the
// planners following it, a corrupt cache refused with its path and why; the traced
// shapes of a model's forward and the matmul gradients derived from it match what
// backward really runs.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Device, type Tensor, linear, nn, sum, tidy, zeros } from '../engine/index.ts';
import type { KernelTrace } from '../gpu/policy.ts';
import { TuningCacheError, readTuning, tuneConv, tuneMatmul, writeTuning } from '../kernels/autotune.ts';
import { convShapeClass } from '../kernels/conv2dLarge.ts';
import { planConv } from '../kernels/convPlan.ts';
import { TILE_64x128 } from '../kernels/gemmLarge.ts';
import { chooseConfig, shapeClass } from '../kernels/matmul.ts';
import { autotuneSession, gradientProducts } from '../run/autotune.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

let device: Device;
let dir: string;
before(async () => {
  device = await testDevice();
  dir = mkdtempSync(join(tmpdir(), 'autotune-'));
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await destroyTestDevice();
});

/** Runs fn with the device's policy pointing at a fresh cache file (and autotune as given); restores the policy. */
async function withCache<T>(name: string, autotune: 'on' | 'off', fn: (file: string) => Promise<T>): Promise<T> {
  const saved = device.policy;
  const file = join(dir, name, 'kernel-tuning.json');
  device.policy = { ...saved, tuningFile: file, autotune, matmul: { ...saved.matmul, tuning: null }, conv: { ...saved.conv, tuning: null } };
  try {
    return await fn(file);
  } finally {
    device.policy = saved;
  }
}

const make = (shape: number[]): Tensor => zeros(device, shape);

describe('autotune', () => {
  it('times a tiny matmul class and a conv geometry, keeps the winners in the policy and writes the cache atomically; the planners follow it', async () => {
    await withCache('tune', 'on', async (file) => {
      const shape = { transA: false, transB: true, M: 5, N: 7, K: 3 };
      const candidates = [{ kind: 'tiled' as const }, { kind: 'large' as const, tile: TILE_64x128 }];
      const [r] = await tuneMatmul(device, [shape], make, { candidates, budgetMs: 20 });
      assert.equal(r!.times.length, 2);
      assert.ok(r!.times.every((t) => t.ms > 0 && Number.isFinite(t.ms)));
      assert.ok(candidates.includes(r!.best as (typeof candidates)[number]));
      assert.deepEqual(chooseConfig(device, { ...shape, batch: 1, batchA: 1, batchB: 1 }), r!.best, 'the matmul planner takes the tuned kernel');

      const g = { batch: 2, cin: 3, h: 5, w: 5, cout: 4, kh: 3, kw: 3, ho: 5, wo: 5, strideH: 1, strideW: 1, padH: 1, padW: 1 };
      const conv = await tuneConv(device, [g], make, { candidates: [null, TILE_64x128], budgetMs: 20 });
      assert.deepEqual(conv.map((c) => c.shape), ['forward', 'gradInput', 'gradWeight'].map((p) => convShapeClass(p as 'forward', g)));
      assert.ok(conv.every((c) => c.times.length === 2));

      assert.ok(existsSync(file));
      assert.deepEqual(readdirSync(join(dir, 'tune')), ['kernel-tuning.json'], 'no temporary file left beside it');
      const back = readTuning(file, device.label)!;
      assert.deepEqual(back.matmul.get(shapeClass(shape)), r!.best);
      for (const c of conv) assert.deepEqual(back.conv.get(c.shape), c.best);
      assert.equal(readTuning(file, 'another adapter'), null);
      // a tuned large tile is what the conv planner gives on a GPU's profile with this policy
      const gpu = { isSoftwareAdapter: false, hasSubgroups: true, subgroupSize: 32, limits: device.limits, policy: device.policy };
      const plan = planConv(gpu, g);
      assert.equal(plan.forward, conv[0]!.best ? 'large' : 'buffer');
    });
  });

  it('a corrupt cache is refused with its path and why, for reading and for writing', async () => {
    const file = join(dir, 'corrupt.json');
    writeFileSync(file, '{"version": 1, "adapters": ');
    assert.throws(() => readTuning(file, device.label), (e: Error) => e instanceof TuningCacheError && e.message.includes(file) && /not JSON/.test(e.message));
    assert.throws(() => writeTuning(file, device.label, { matmul: new Map(), conv: new Map() }), /not JSON/);
    writeFileSync(file, JSON.stringify({ version: 1, adapters: { x: { matmul: { 'NN:1x1x1': { kind: 'huge' } }, conv: {} } } }));
    assert.throws(() => readTuning(file, 'x'), (e: Error) => e.message.includes(file) && e.message.includes("adapters['x'].matmul['NN:1x1x1']"));
    writeFileSync(file, JSON.stringify({ version: 1, adapters: { x: { matmul: {}, conv: { c: { bm: 128, bn: 128, bk: 8, tm: 3, tn: 8, double: false } } } } }));
    assert.throws(() => readTuning(file, 'x'), /multiples of 4/);
    writeFileSync(file, JSON.stringify({ version: 2 }));
    assert.throws(() => readTuning(file, 'x'), /not a version-1 tuning cache/);
  });

  it('the session (forced on) traces its model, tunes what the cache lacks, logs it, and reads it back the next time', async () => {
    const model = new nn.Sequential(new nn.Conv2d(device, 3, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.Flatten(), new nn.Linear(device, 4 * 6 * 6, 5));
    try {
      await withCache('session', 'on', async (file) => {
        const lines: string[] = [];
        await autotuneSession(device, model, [2, 3, 6, 6], (l) => lines.push(l));
        assert.ok(lines.some((l) => /autotune: 3 matmul and 3 conv shape classes timed/.test(l)), lines.join('\n'));
        assert.ok(model.training, 'the model is back in training mode');
        const t = readTuning(file, device.label)!;
        assert.equal(t.matmul.size, 3);
        assert.equal(t.conv.size, 3);
        device.policy = { ...device.policy, matmul: { ...device.policy.matmul, tuning: null }, conv: { ...device.policy.conv, tuning: null } };
        const again: string[] = [];
        await autotuneSession(device, model, [2, 3, 6, 6], (l) => again.push(l));
        assert.match(again.join('\n'), /3 matmul and 3 conv shape classes .* read from/);
        assert.match(again.join('\n'), /tuned already/);
      });
      // off (the default on software adapters): nothing cached, nothing logged
      await withCache('off', 'off', async (file) => {
        const lines: string[] = [];
        await autotuneSession(device, model, [2, 3, 6, 6], (l) => lines.push(l));
        assert.deepEqual(lines, []);
        assert.ok(!existsSync(file));
      });
    } finally {
      model.dispose();
    }
  });

  it("the gradient products derived from a forward trace are the ones backward runs (engine/ops/matmul.ts)", () => {
    const trace: KernelTrace = { matmul: [], conv: [] };
    const saved = device.policy;
    device.policy = { ...saved, trace };
    try {
      tidy(() => {
        const x = zeros(device, [6, 5]);
        const w = zeros(device, [3, 5]);
        x.requiresGrad = true;
        w.requiresGrad = true;
        sum(linear(x, w)).backward();
      });
    } finally {
      device.policy = saved;
    }
    const key = (s: KernelTrace['matmul'][number]): string => shapeClass(s);
    assert.deepEqual(new Set(gradientProducts(trace.matmul[0]!).map(key)), new Set(trace.matmul.map(key)));
  });
});
