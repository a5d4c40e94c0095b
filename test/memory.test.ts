// Memory stays flat over a long training loop. Its own file (own process), so no
// garbage from other tests is collected, and returned to the pool, mid-measurement.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { type Device, Rng, SGD, type Tensor, keep, linear, relu, softmaxCrossEntropy, tensor, tidy } from '../engine/index.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

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
  const step = (): void => {
    tidy(() => softmaxCrossEntropy(linear(relu(linear(x, w1, b1)), w2, b2), y).backward());
    opt.step();
    opt.zeroGrad();
    device.flush();
  };
  for (let i = 0; i < 20; i++) step();
  await device.sync();
  const warm = device.memoryStats();
  const submits0 = device.executionStats().submits;
  for (let i = 0; i < 500; i++) step();
  await device.sync();
  const end = device.memoryStats();
  assert.equal(end.liveBytes, warm.liveBytes, 'live bytes changed');
  assert.equal(end.pooledBytes, warm.pooledBytes, 'pooled bytes changed');
  assert.equal(end.createdBuffers, warm.createdBuffers, 'buffers were created after warm-up');
  assert.equal(device.executionStats().submits - submits0, 500, 'one submit per training step');
});
