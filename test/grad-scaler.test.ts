// Dynamic loss scaling (engine/gradScaler.ts, PyTorch GradScaler semantics): the
// scale's growth and backoff rule; a clean scaled step gives bit for bit the update
// of the unscaled loss (power-of-two scale: exact in f32); a forced overflow (a
// scale that turns the gradients into inf) skips the step, leaves the weights and
// velocities as they were, and halves the scale; bad options are refused.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Device, GradScaler, Rng, SGD, nn, scale, softmaxCrossEntropy, tensor, tidy } from '../engine/index.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

function pair(): { a: nn.Linear; b: nn.Linear } {
  const a = new nn.Linear(device, 6, 4);
  const b = new nn.Linear(device, 6, 4);
  b.loadStateDict(a.stateDict());
  return { a, b };
}

const rng = new Rng(21);
const xs = Float32Array.from({ length: 8 * 6 }, () => rng.normal());
const ys = Int32Array.from({ length: 8 }, (_, i) => i % 4);

/** One forward/backward of the batch through `model`, the loss scaled by `s` (or not). */
function backward(model: nn.Linear, scaler: GradScaler | null, lossFactor = 1): void {
  tidy(() => {
    const x = tensor(device, xs, [8, 6]);
    const y = tensor(device, ys, [8], 'i32');
    let loss = softmaxCrossEntropy(model.forward(x), y);
    if (lossFactor !== 1) loss = scale(loss, lossFactor);
    (scaler ? scaler.scaleLoss(loss) : loss).backward();
  });
}

const weights = async (m: nn.Linear): Promise<number[]> => [...(await m.weight.toArray()), ...(await m.bias!.toArray())];

describe('GradScaler', () => {
  it('grows the scale after growthInterval clean steps and backs off (resetting the count) on an overflow', () => {
    const s = new GradScaler({ initScale: 8, growthInterval: 3 });
    s.update(false);
    s.update(false);
    assert.equal(s.scale, 8);
    s.update(false);
    assert.deepEqual(s.state(), { scale: 16, growthTracker: 0, skipped: 0 });
    s.update(false);
    s.update(true);
    assert.deepEqual([s.scale, s.growthTracker], [8, 0]);
    const d = new GradScaler();
    assert.deepEqual([d.scale, d.growthFactor, d.backoffFactor, d.growthInterval], [65536, 2, 0.5, 2000]);
  });

  it('a clean scaled step is bit for bit the unscaled step', async () => {
    const { a, b } = pair();
    const optA = new SGD({ params: a.parameters(), lr: 0.1, momentum: 0.9 });
    const optB = new SGD({ params: b.parameters(), lr: 0.1, momentum: 0.9 });
    const scaler = new GradScaler({ initScale: 2 ** 12, growthInterval: 2 });
    for (let step = 0; step < 3; step++) {
      backward(a, null);
      optA.step();
      optA.zeroGrad();
      backward(b, scaler);
      assert.equal(await scaler.step(optB), true, `step ${step} taken`);
      optB.zeroGrad();
    }
    assert.deepEqual(await weights(b), await weights(a));
    assert.equal(scaler.scale, 2 ** 13, 'grew once after two clean steps');
    [a, b].forEach((m) => m.dispose());
  });

  it('a forced overflow skips the step (weights and step count unchanged) and halves the scale; the next clean step goes through', async () => {
    const { a } = pair();
    const opt = new SGD({ params: a.parameters(), lr: 0.1, momentum: 0.9 });
    const scaler = new GradScaler({ initScale: 2 ** 100 });
    const before = await weights(a);
    // 2^100 × a loss made 2^40 times larger overflows f32 (max ~2^128) in the gradients
    backward(a, scaler, 2 ** 40);
    assert.equal(await scaler.step(opt), false);
    opt.zeroGrad();
    assert.deepEqual(await weights(a), before, 'weights untouched');
    assert.equal(opt.stepCount, 0);
    assert.deepEqual(scaler.state(), { scale: 2 ** 99, growthTracker: 0, skipped: 1 });
    scaler.scale = 2 ** 10;
    backward(a, scaler);
    assert.equal(await scaler.step(opt), true);
    assert.equal(opt.stepCount, 1);
    assert.notDeepEqual(await weights(a), before);
    a.dispose();
  });

  it('refuses bad options and a step without gradients', async () => {
    assert.throws(() => new GradScaler({ initScale: 0 }), /initScale/);
    assert.throws(() => new GradScaler({ backoffFactor: 1 }), /backoffFactor/);
    assert.throws(() => new GradScaler({ growthInterval: 0.5 }), /growthInterval/);
    const m = new nn.Linear(device, 2, 2);
    await assert.rejects(new GradScaler().step(new SGD({ params: m.parameters(), lr: 0.1 })), /no parameter has a gradient/);
    m.dispose();
  });
});
