// Memory stays flat over a long training loop. Its own file (own process), so no
// garbage from other tests is collected, and returned to the pool, mid-measurement.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type Device, Rng, SGD, type Tensor, conv2d, globalAvgPool2d, keep, linear, relu, softmaxCrossEntropy, tensor, tidy } from '../engine/index.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';
import { allFusionsPolicy } from '../gpu/policy.ts';
import { resnet } from '../models/resnet.ts';
import { isSoftwareAdapter } from '../kernels/common.ts';
import { textureConvSupported } from '../kernels/conv2dTexture.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

/** One training step: the loss's backward in a scope, the optimizer step, one submit. */
function trainStep(opt: SGD, loss: () => Tensor): () => void {
  return () => {
    tidy(() => loss().backward());
    opt.step();
    opt.zeroGrad();
    device.flush();
  };
}

// Full collections before the warm-up and before the baseline: garbage (tensors left to
// the finalizer, e.g. an earlier test's) must not return to the pool in the middle of
// the measured steps, which happened under load (live bytes fell by one 8 KiB buffer),
// and which would also hand the steps other buffers, so new bind groups.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
async function collectGarbage(): Promise<void> {
  // Finalizers run in a later task, and under load after a 20 ms timer has already fired
  // (the CNN test once saw an earlier test's buffers come back after its warm-up, so its
  // first measured step got other buffers and made 26 bind groups): collect until the
  // live bytes stop changing.
  let live = -1;
  for (let round = 0; round < 10 && device.memoryStats().liveBytes !== live; round++) {
    live = device.memoryStats().liveBytes;
    gc();
    await new Promise((r) => setTimeout(r, 20));
    gc();
  }
}

/** Runs `warmup` steps, then `steps` more, and asserts memory (buffers and textures) stayed flat; returns submits counted. */
async function assertFlatAfterWarmUp(step: () => void, warmup: number, steps: number): Promise<number> {
  await collectGarbage(); // an earlier test's tensors, left to the finalizer, go back to the pool now
  for (let i = 0; i < warmup; i++) step();
  await device.sync();
  await collectGarbage();
  const warm = device.memoryStats();
  const submits0 = device.executionStats().submits;
  const groups0 = device.executionStats().bindGroupsCreated;
  for (let i = 0; i < steps; i++) step();
  await device.sync();
  const end = device.memoryStats();
  // every step gets the buffers the one before had (the pool hands out the oldest free
  // buffer), so its bind groups all come from the cache: no host cost for them
  assert.equal(device.executionStats().bindGroupsCreated, groups0, 'bind groups were created after warm-up');
  assert.equal(end.liveBytes, warm.liveBytes, 'live bytes changed');
  assert.equal(end.pooledBytes, warm.pooledBytes, 'pooled bytes changed');
  assert.equal(end.createdBuffers, warm.createdBuffers, 'buffers were created after warm-up');
  assert.equal(end.createdTextures, warm.createdTextures, 'textures were created after warm-up');
  return device.executionStats().submits - submits0;
}

it('500 steps of an MLP leave live and pooled memory flat after warm-up, with one submit per step', async () => {
  const rng = new Rng(3);
  const N = 128;
  const dim = 8;
  const xs = Float32Array.from({ length: N * dim }, () => rng.uniform(-1, 1));
  const ys = Int32Array.from({ length: N }, (_, i) => (xs[i * dim]! * xs[i * dim + 1]! > 0 ? 1 : 0));
  const x = keep(tensor(device, xs, [N, dim]));
  const y = keep(tensor(device, ys, [N], 'i32'));
  const init = (shape: number[], fanIn: number): Tensor =>
    tensor(device, Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => rng.uniform(-1, 1) / Math.sqrt(fanIn)), shape).requireGrad();
  const params = [init([32, dim], dim), init([32], dim), init([2, 32], 32), init([2], 32)];
  const [w1, b1, w2, b2] = params as [Tensor, Tensor, Tensor, Tensor];
  const opt = new SGD({ params, lr: 0.1, momentum: 0.9 });
  const step = trainStep(opt, () => softmaxCrossEntropy(linear(relu(linear(x, w1, b1)), w2, b2), y));
  assert.equal(await assertFlatAfterWarmUp(step, 20, 500), 500, 'one submit per training step');
  // freed here, not by the finalizer, whose timing under load would hand the next test's
  // measured steps these buffers
  [x, y, ...params].forEach((t) => t.dispose());
  opt.dispose();
});

it('a small CNN: conv kernels (their repacked textures included) create nothing after warm-up', async () => {
  const rng = new Rng(5);
  const N = 4;
  const x = keep(tensor(device, Float32Array.from({ length: N * 3 * 12 * 12 }, () => rng.uniform(-1, 1)), [N, 3, 12, 12]));
  const y = keep(tensor(device, Int32Array.from({ length: N }, (_, i) => i % 3), [N], 'i32'));
  const init = (shape: number[]): Tensor =>
    tensor(device, Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => rng.uniform(-0.3, 0.3)), shape).requireGrad();
  const params = [init([8, 3, 3, 3]), init([16, 8, 3, 3]), init([3, 16]), init([3])];
  const [c1, c2, w, b] = params as [Tensor, Tensor, Tensor, Tensor];
  const opt = new SGD({ params, lr: 0.05, momentum: 0.9 });
  const step = trainStep(opt, () => {
    const h = relu(conv2d(relu(conv2d(x, c1, null, { padding: 1 })), c2, null, { stride: 2, padding: 1 }));
    return softmaxCrossEntropy(linear(globalAvgPool2d(h).reshape([N, 16]), w, b), y);
  });
  await assertFlatAfterWarmUp(step, 3, 30);
  [x, y, ...params].forEach((t) => t.dispose());
  opt.dispose();
});

it('a ResNet-8 with every fusion on (deferred outputs and gradients, raw textures handed between ops) creates nothing after warm-up', async () => {
  const saved = device.policy;
  device.policy = allFusionsPolicy();
  try {
    const rng = new Rng(6);
    const N = 4;
    const x = keep(tensor(device, Float32Array.from({ length: N * 3 * 32 * 32 }, () => rng.uniform(-1, 1)), [N, 3, 32, 32]));
    const y = keep(tensor(device, Int32Array.from({ length: N }, (_, i) => i % 10), [N], 'i32'));
    const model = resnet(device, { depth: 8, numClasses: 10, shortcut: 'A', seed: 2 });
    model.train(true);
    const opt = new SGD({ params: model.parameters(), lr: 0.05, momentum: 0.9 });
    const step = trainStep(opt, () => softmaxCrossEntropy(model.forward(x), y));
    // where the row kernels run (software adapters), the step hands raw textures over (rawGrad) and defers writes
    const labels = (await device.countTraffic(step)).map((r) => r.label);
    if (isSoftwareAdapter(device) && textureConvSupported(device)) {
      assert.ok(labels.some((l) => l.includes('(raw dx)')), `no raw dY handed over: ${labels.join('; ')}`);
      assert.ok(labels.some((l) => l.includes('bn + relu prologue')), `no deferred batchnorm output: ${labels.join('; ')}`);
    }
    await assertFlatAfterWarmUp(step, 3, 20);
    [x, y, ...model.parameters()].forEach((t) => t.dispose());
    opt.dispose();
  } finally {
    device.policy = saved;
  }
});

it('steps after trimPool() (which also drops the cached bind groups holding its buffers) train exactly as without', async () => {
  const rng = new Rng(7);
  const N = 16;
  const x = keep(tensor(device, Float32Array.from({ length: N * 4 }, () => rng.uniform(-1, 1)), [N, 4]));
  const y = keep(tensor(device, Int32Array.from({ length: N }, (_, i) => i % 2), [N], 'i32'));
  const make = (): { w: Tensor; b: Tensor; opt: SGD } => {
    const w = tensor(device, Float32Array.from({ length: 8 }, (_, i) => 0.1 * (i - 4)), [2, 4]).requireGrad();
    const b = tensor(device, new Float32Array(2), [2]).requireGrad();
    return { w, b, opt: new SGD({ params: [w, b], lr: 0.5, momentum: 0.9 }) };
  };
  const losses = async (trimEvery: number): Promise<number[]> => {
    const { w, b, opt } = make();
    const out: number[] = [];
    for (let i = 0; i < 12; i++) {
      const loss = tidy(() => {
        const l = softmaxCrossEntropy(linear(x, w, b), y);
        l.backward();
        return l;
      });
      opt.step();
      opt.zeroGrad();
      out.push((await loss.toArray())[0]!);
      loss.dispose();
      // a trimmed pool destroys the free buffers the cached bind groups point at
      if (trimEvery && i % trimEvery === 0) device.trimPool();
    }
    [w, b].forEach((t) => t.dispose());
    return out;
  };
  const plain = await losses(0);
  const trimmed = await losses(3);
  assert.deepEqual(trimmed, plain);
  assert.ok(plain[11]! < plain[0]!, 'the loss falls');
});

it('memoryStats: the peak of live bytes and the largest buffer since resetPeakMemory()', () => {
  device.resetPeakMemory();
  const base = device.memoryStats();
  assert.equal(base.largestBufferBytes, 0);
  const big = device.acquire(3 * 2 ** 20 + 5);
  const small = device.acquire(1000);
  const m = device.memoryStats();
  assert.equal(m.largestBufferBytes, big.size);
  assert.ok(big.size >= 3 * 2 ** 20 + 5);
  assert.equal(m.peakLiveBytes, base.liveBytes + big.size + small.size);
  device.release(big);
  device.release(small);
  assert.equal(device.memoryStats().peakLiveBytes, m.peakLiveBytes, 'the peak stays after a release');
  device.resetPeakMemory();
  assert.equal(device.memoryStats().largestBufferBytes, 0);
  assert.equal(device.memoryStats().peakLiveBytes, base.liveBytes);
});
