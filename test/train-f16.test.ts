// Half-precision training end to end (`--precision f16`, issue 19): f16 activations and
// gradients, f32 weights, dynamic loss scaling. The same runs at f16 and f32 on the
// built-in dataset reach the same accuracy within noise (2 seeds each), both through
// lavapipe's own conv kernels on f32 copies and through the GPU's large-tile kernels
// that read and write f16 (forced through the kernel policy); the metrics carry each
// step's loss scale, the summary the scaler's end state; a resumed f16 run continues
// from its saved scale and is bit-exact with the uninterrupted run.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS, type TrainConfig, validateConfig } from '../run/config.ts';
import { runTraining } from '../run/train.ts';
import type { Device } from '../engine/index.ts';
import { destroyTestDevice, setPolicy, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const tmp = (): string => mkdtempSync(join(tmpdir(), 'onecycle-f16-'));
const quiet = { quiet: true, log: () => {} };

/** ResNet-8 on the generated dataset: a residual net with batchnorm, pooling and a linear head. */
function config(out: string, extra: Partial<TrainConfig> = {}): TrainConfig {
  return validateConfig(
    {
      ...DEFAULTS, model: 'resnet8', width: 8, imageSize: 16, syntheticTrain: 1024, syntheticTest: 512,
      batchSize: 32, iterations: 96, logEvery: 8, maxLr: 0.4, out, ...extra,
    },
    'test',
  );
}

interface StepLine { step: number; loss: number; lossScale?: number; skipped?: boolean }
const steps = (dir: string): StepLine[] =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"kind":"step"')).map((l) => JSON.parse(l) as StepLine);
const summary = (dir: string): { testAccuracy: number; precision: string; lossScaling?: { scale: number; skipped: number; growthTracker: number } } =>
  JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));

async function accuracies(precision: 'f32' | 'f16'): Promise<number[]> {
  const out: number[] = [];
  for (const seed of [1, 2]) {
    const dir = tmp();
    const r = await runTraining(config(dir, { precision, seed }), { ...quiet, device });
    assert.equal(r.result.end, 'completed', r.result.message);
    out.push(summary(dir).testAccuracy);
  }
  return out;
}

const mean = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length;

describe('--precision f16', () => {
  for (const [name, path] of [["lavapipe's own conv kernels (on f32 copies)", 'auto'], ['the large-tile kernels storing f16 (forced)', 'large']] as const) {
    it(`reaches the f32 accuracy within noise: ${name}`, async () => {
      const restore = setPolicy(device, { conv: { path } });
      try {
        const f32 = await accuracies('f32');
        const f16 = await accuracies('f16');
        // well above chance (10 classes) and within the seed-to-seed spread of a short run
        assert.ok(mean(f32) > 0.5, `f32 runs learn: ${f32}`);
        assert.ok(Math.abs(mean(f16) - mean(f32)) <= 0.05, `f16 ${f16.map((a) => a.toFixed(3))} vs f32 ${f32.map((a) => a.toFixed(3))}`);
      } finally {
        restore();
      }
    });
  }

  it('logs each step\'s loss scale, reports the scaler in the summary, and resumes bit-exactly with its scale', async () => {
    const whole = tmp();
    await runTraining(config(whole, { precision: 'f16', iterations: 40, checkpointEvery: 8 }), { ...quiet, device });
    const lines = steps(whole);
    assert.equal(lines.length, 40);
    for (const l of lines) assert.ok(l.lossScale! > 0 && typeof l.skipped === 'boolean', JSON.stringify(l));
    const s = summary(whole);
    assert.equal(s.precision, 'f16');
    // PyTorch's defaults: 2^16, halved on each skipped step, no growth within 2000 clean steps
    const skipped = lines.filter((l) => l.skipped).length;
    assert.equal(lines[0]!.lossScale, 2 ** 16);
    for (let i = 1; i < lines.length; i++) assert.equal(lines[i]!.lossScale, lines[i - 1]!.lossScale! * (lines[i - 1]!.skipped ? 0.5 : 1), `step ${i}`);
    assert.deepEqual(s.lossScaling, { scale: 2 ** 16 * 0.5 ** skipped, growthTracker: 40 - 1 - lines.map((l) => !!l.skipped).lastIndexOf(true), skipped });

    const cut = tmp();
    await runTraining(config(cut, { precision: 'f16', iterations: 40, checkpointEvery: 8 }), { ...quiet, device, stopAtStep: 16 });
    const state = JSON.parse(readFileSync(join(cut, 'checkpoints', readFileSync(join(cut, 'checkpoints', 'latest'), 'utf8').trim(), 'state.json'), 'utf8')) as { scaler?: { scale: number } };
    assert.ok(state.scaler && state.scaler.scale > 0, 'the checkpoint holds the scaler state');
    await runTraining(config(cut, { precision: 'f16', iterations: 40, checkpointEvery: 8 }), { ...quiet, device, resume: true });
    assert.deepEqual(steps(cut).map((l) => [l.loss, l.lossScale]), lines.map((l) => [l.loss, l.lossScale]));
  });
});
