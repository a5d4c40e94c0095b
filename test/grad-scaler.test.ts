// Dynamic loss scaling (engine/gradScaler.ts, PyTorch GradScaler semantics, decided on
// the GPU): the scale's growth and backoff rule; a clean scaled step gives bit for bit
// the update of the unscaled loss (power-of-two scale: exact in f32); a forced overflow
// (a scale that turns the gradients into inf) skips the update, leaves the weights and
// velocities as they were, and halves the scale; no step submits or reads back on its
// own; the state survives a save and load; bad options are refused.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Device, GradScaler, Rng, SGD, add, nn, scale, softmaxCrossEntropy, sum, tensor, tidy } from '../engine/index.ts';
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

/** One forward/backward of the batch through `model`, through the scaler (or not), the loss times `lossFactor`. */
function backward(model: nn.Linear, scaler: GradScaler | null, lossFactor = 1): void {
  tidy(() => {
    const x = tensor(device, xs, [8, 6]);
    const y = tensor(device, ys, [8], 'i32');
    let loss = softmaxCrossEntropy(model.forward(x), y);
    if (lossFactor !== 1) loss = scale(loss, lossFactor);
    if (scaler) scaler.backward(loss);
    else loss.backward();
  });
}

const weights = async (m: nn.Linear): Promise<number[]> => [...(await m.weight.toArray()), ...(await m.bias!.toArray())];

/** A scaled step: backward, the scaler's gated update, the gradients zeroed. */
function scaledStep(model: nn.Linear, opt: SGD, scaler: GradScaler, lossFactor = 1): void {
  backward(model, scaler, lossFactor);
  scaler.step(opt);
  opt.zeroGrad();
}

describe('GradScaler', () => {
  it('unscales a gradient buffer two parameters share once (a + b of two leaves: both gradients are views of one)', async () => {
    const a = tensor(device, [1, 2, 3]).requireGrad();
    const b = tensor(device, [4, 5, 6]).requireGrad();
    const opt = new SGD({ params: [a, b], lr: 1 });
    const s = new GradScaler(device, { initScale: 2 ** 8 });
    tidy(() => s.backward(sum(add(a, b))));
    s.step(opt);
    // each gradient is 1 after unscaling (256/256), not 1/256: w −= 1·1
    assert.deepEqual([...(await a.toArray()), ...(await b.toArray())], [0, 1, 2, 3, 4, 5]);
    [opt, s].forEach((x) => x.dispose());
  });

  it('grows the scale after growthInterval clean steps and backs off (resetting the count) on an overflow', async () => {
    const m = new nn.Linear(device, 6, 4);
    const opt = new SGD({ params: m.parameters(), lr: 0.01 });
    const s = new GradScaler(device, { initScale: 2 ** 90, growthInterval: 3 });
    scaledStep(m, opt, s);
    scaledStep(m, opt, s);
    assert.deepEqual(await s.state(), { scale: 2 ** 90, growthTracker: 2, skipped: 0 });
    scaledStep(m, opt, s);
    assert.deepEqual(await s.state(), { scale: 2 ** 91, growthTracker: 0, skipped: 0 });
    scaledStep(m, opt, s);
    scaledStep(m, opt, s, 2 ** 45); // 2^91 × 2^45 overflows f32 in the gradients
    assert.deepEqual(await s.state(), { scale: 2 ** 90, growthTracker: 0, skipped: 1 });
    const d = new GradScaler(device);
    assert.deepEqual([(await d.state()).scale, d.growthFactor, d.backoffFactor, d.growthInterval], [65536, 2, 0.5, 2000]);
    [m, opt, s, d].forEach((x) => x.dispose());
  });

  it('a clean scaled step is bit for bit the unscaled step, and records without a submit or a readback', async () => {
    const { a, b } = pair();
    const optA = new SGD({ params: a.parameters(), lr: 0.1, momentum: 0.9 });
    const optB = new SGD({ params: b.parameters(), lr: 0.1, momentum: 0.9 });
    const scaler = new GradScaler(device, { initScale: 2 ** 12, growthInterval: 2 });
    for (let step = 0; step < 3; step++) {
      backward(a, null);
      optA.step();
      optA.zeroGrad();
      backward(b, scaler);
      const submits = device.executionStats().submits;
      scaler.step(optB);
      assert.equal(device.executionStats().submits, submits, 'the scaler step only records');
      optB.zeroGrad();
    }
    assert.deepEqual(await weights(b), await weights(a));
    assert.equal((await scaler.state()).scale, 2 ** 13, 'grew once after two clean steps');
    [a, b, optA, optB, scaler].forEach((m) => m.dispose());
  });

  it('a forced overflow skips the update (weights and velocities unchanged, the schedule moves on) and halves the scale; the next clean step goes through', async () => {
    const { a } = pair();
    const opt = new SGD({ params: a.parameters(), lr: 0.1, momentum: 0.9 });
    const scaler = new GradScaler(device, { initScale: 2 ** 4 });
    scaledStep(a, opt, scaler); // a velocity to keep
    const before = await weights(a);
    const velocities = (await opt.state()).velocities;
    scaler.loadState({ scale: 2 ** 100, growthTracker: 0, skipped: 0 });
    // 2^100 × a loss made 2^40 times larger overflows f32 (max ~2^128) in the gradients
    scaledStep(a, opt, scaler, 2 ** 40);
    assert.deepEqual(await weights(a), before, 'weights untouched');
    assert.deepEqual((await opt.state()).velocities, velocities, 'velocities untouched');
    assert.equal(opt.stepCount, 2, 'the step counter (the schedules) moves on, as PyTorch scheduler.step() does');
    assert.deepEqual(await scaler.state(), { scale: 2 ** 99, growthTracker: 0, skipped: 1 });
    scaler.loadState({ scale: 2 ** 10, growthTracker: 5, skipped: 1 });
    assert.deepEqual(await scaler.state(), { scale: 2 ** 10, growthTracker: 5, skipped: 1 });
    scaledStep(a, opt, scaler);
    assert.notDeepEqual(await weights(a), before);
    assert.deepEqual(await scaler.state(), { scale: 2 ** 10, growthTracker: 6, skipped: 1 });
    [a, opt, scaler].forEach((m) => m.dispose());
  });

  it('refuses bad options, a bad state and a step without gradients', () => {
    assert.throws(() => new GradScaler(device, { initScale: 0 }), /initScale/);
    assert.throws(() => new GradScaler(device, { backoffFactor: 1 }), /backoffFactor/);
    assert.throws(() => new GradScaler(device, { growthInterval: 0.5 }), /growthInterval/);
    const s = new GradScaler(device);
    assert.throws(() => s.loadState({ scale: Infinity, growthTracker: 0, skipped: 0 }), /scale/);
    assert.throws(() => s.loadState({ scale: 1, growthTracker: -1, skipped: 0 }), /growthTracker/);
    const m = new nn.Linear(device, 2, 2);
    assert.throws(() => s.step(new SGD({ params: m.parameters(), lr: 0.1 })), /no parameter has a gradient/);
    tidy(() => s.backward(sum(m.forward(tensor(device, [1, 2], [1, 2])))));
    assert.throws(() => s.step(new SGD({ params: m.parameters(), lr: 0.1, momentum: 0.9, dampening: 0.5 })), /dampening/);
    m.zeroGrad();
    m.dispose();
    s.dispose();
  });
});
