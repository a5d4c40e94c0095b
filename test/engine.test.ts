// The engine's machinery: device errors, tensors and scopes, the tape, memory
// that stays flat, submits per step, a process that exits by itself, and a
// 2-layer MLP trained with plain SGD.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import {
  type Device, GpuError, Rng, SGD, type Tensor, accuracy, add, createDevice, keep, linear, matmul, mean, mul, noGrad,
  relu, softmaxCrossEntropy, sum, tensor, tidy, zeros,
} from '../engine/index.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

/** XOR of signs in 2-D, plus 6 distractor dimensions: needs the hidden layer. */
export function xorDataset(n: number, seed: number): { x: Float32Array; y: Int32Array; dim: number } {
  const rng = new Rng(seed);
  const dim = 8;
  const x = new Float32Array(n * dim);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) x[i * dim + d] = rng.uniform(-1, 1);
    y[i] = x[i * dim]! * x[i * dim + 1]! > 0 ? 1 : 0;
  }
  return { x, y, dim };
}

function mlp(rng: Rng, inDim: number, hidden: number, classes: number): Tensor[] {
  const init = (shape: number[], fanIn: number): Tensor =>
    tensor(device, Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => rng.uniform(-1, 1) / Math.sqrt(fanIn)), shape).requireGrad();
  return [init([hidden, inDim], inDim), init([hidden], inDim), init([classes, hidden], hidden), init([classes], hidden)];
}

const forward = (x: Tensor, [w1, b1, w2, b2]: Tensor[]): Tensor => linear(relu(linear(x, w1!, b1)), w2!, b2);

describe('device', () => {
  it('requests the adapter limits CIFAR-sized tensors need', () => {
    // a batch of 128 CIFAR images at 64 channels, 32×32, in f32 is 32 MiB
    assert.ok(device.limits.maxStorageBufferBindingSize >= 128 * 64 * 32 * 32 * 4);
    assert.ok(device.limits.maxComputeInvocationsPerWorkgroup >= 256);
  });

  it('no adapter: an error that says what to install, not a bare null', async () => {
    // a backend this machine does not have stands in for a machine without a driver
    await assert.rejects(createDevice({ dawnFlags: ['backend=d3d12'] }), (e: Error) => e instanceof GpuError && /lavapipe/.test(e.message) && /Vulkan/.test(e.message));
  });

  it('an invalid kernel surfaces as an error naming the kernel', async () => {
    const p = device.pipeline('test:broken', 'deliberately broken kernel', () => '@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }');
    const buf = device.acquire(16);
    device.dispatch(p, [], [1]);
    await assert.rejects(device.sync(), (e: Error) => e instanceof GpuError && /deliberately broken kernel/.test(e.message));
    device.release(buf);
    await device.sync(); // the error was reported once and cleared
  });

  it('a validation error at dispatch names the kernel', async () => {
    const src = '@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1) fn main() { o[0] = 1.0; }';
    const p = device.pipeline('test:unbound', 'kernel with a missing binding', () => src);
    device.dispatch(p, [], [1]);
    await assert.rejects(device.sync(), /kernel with a missing binding/);
  });

  it('profile times each dispatch by kernel label, largest first, and dispatching works as before afterwards', async (t) => {
    if (!device.hasTimestampQuery) return t.skip('no timestamp-query on this adapter');
    const a = tensor(device, new Float32Array(4096).fill(1), [4096]);
    const rows = await device.profile(() => {
      tidy(() => {
        add(a, a);
        add(a, a);
        relu(a);
      });
    });
    const byLabel = new Map(rows.map((r) => [r.label, r]));
    const adds = [...byLabel.keys()].filter((l) => l.startsWith('binary add'));
    assert.equal(adds.length, 1, `one add label: ${[...byLabel.keys()].join(', ')}`);
    assert.equal(byLabel.get(adds[0]!)!.count, 2);
    assert.ok(rows.every((r) => r.ms >= 0 && Number.isFinite(r.ms)), JSON.stringify(rows));
    assert.deepEqual(rows.map((r) => r.ms), [...rows.map((r) => r.ms)].sort((x, y) => y - x), 'largest first');
    const before = device.executionStats().dispatches;
    tidy(() => add(a, a));
    assert.equal(device.executionStats().dispatches - before, 1);
    assert.deepEqual(Array.from(new Float32Array(await device.read(a.buffer, 0, 16))), [1, 1, 1, 1]);
    a.dispose();
  });

  it('profile takes more dispatches than one query set holds (a new submit when it is full)', async (t) => {
    if (!device.hasTimestampQuery) return t.skip('no timestamp-query on this adapter');
    const a = tensor(device, new Float32Array(64).fill(2), [64]);
    const rows = await device.profile(() => {
      for (let i = 0; i < 2100; i++) tidy(() => relu(a));
    });
    assert.equal(rows.reduce((n, r) => n + r.count, 0), 2100);
    a.dispose();
  });

  it('a script that destroys its device exits by itself', () => {
    const script = [
      "import { createDevice, randn, matmul } from './engine/index.ts';",
      'const d = await createDevice();',
      'const a = randn(d, [64, 64], { seed: 1 });',
      'console.log((await matmul(a, a).toArray()).length);',
      'd.destroy();',
    ].join('\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url).pathname,
      timeout: 60_000,
      encoding: 'utf8',
    });
    assert.equal(r.signal, null, `the process was killed (${r.signal}): it did not exit by itself`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /4096/);
  });
});

describe('tensors', () => {
  it('round-trips data; reshape shares the buffer; seeded random is reproducible', async () => {
    const t = tensor(device, [1, 2, 3, 4, 5, 6], [2, 3]);
    const r = t.reshape([3, -1]);
    assert.deepEqual(r.shape, [3, 2]);
    assert.equal(r.buffer, t.buffer);
    assert.deepEqual([...(await r.toArray())], [1, 2, 3, 4, 5, 6]);
    assert.throws(() => t.reshape([4, 2]), /reshape: cannot reshape \[2, 3\]/);
    t.dispose();
    assert.deepEqual([...(await r.toArray())], [1, 2, 3, 4, 5, 6], 'the view keeps the storage alive');
    r.dispose();
    assert.throws(() => r.buffer, /after dispose/);
  });

  it('tidy frees temporaries and keeps what it returns', () => {
    const before = device.memoryStats().liveBytes;
    const kept = tidy(() => {
      const a = zeros(device, [1000]);
      const b = add(a, a);
      return add(b, a);
    });
    assert.equal(device.memoryStats().liveBytes - before, 4096, 'only the result stays live');
    kept.dispose();
    assert.equal(device.memoryStats().liveBytes, before);
  });

  it('shape mismatches throw before any GPU work, naming the op and both shapes', () => {
    const a = zeros(device, [2, 3]);
    const b = zeros(device, [4, 5]);
    const floatLabels = zeros(device, [2]);
    const labels = tensor(device, [0, 1, 2], [3], 'i32');
    const before = device.executionStats().dispatches;
    assert.throws(() => matmul(a, b), /matmul: inner dimensions differ \(3 vs 4\): A \[2, 3\] · B \[4, 5\]/);
    assert.throws(() => add(a, b), /add: shapes \[2, 3\] and \[4, 5\] do not broadcast/);
    assert.throws(() => linear(a, b), /linear: input \[2, 3\] does not match weight \[4, 5\]/);
    assert.throws(() => softmaxCrossEntropy(a, labels), /labels \[3\] do not match logits \[2, 3\]/);
    assert.throws(() => softmaxCrossEntropy(a, floatLabels), /labels must be an i32 tensor/);
    assert.throws(() => sum(a, 2), /sum: axis 2 out of range for shape \[2, 3\]/);
    assert.throws(() => tensor(device, [1, 2, 3], [2, 2]), /3 values do not fill shape \[2, 2\]/);
    assert.equal(device.executionStats().dispatches, before, 'no kernel was dispatched');
    for (const t of [a, b, labels, floatLabels]) t.dispose();
  });

  it('an out-of-range label gives a NaN loss, not a silent number', async () => {
    const z = zeros(device, [2, 3]);
    const y = tensor(device, [0, 3], [2], 'i32');
    assert.ok(Number.isNaN(await softmaxCrossEntropy(z, y).item()));
  });
});

describe('autograd', () => {
  it('accumulates gradients across backward calls until zeroGrad', async () => {
    const w = tensor(device, [1, 2, 3], [3]).requireGrad();
    const c = tensor(device, [4, 5, 6], [3]);
    tidy(() => sum(mul(w, c)).backward());
    tidy(() => sum(mul(w, c)).backward());
    assert.deepEqual([...(await w.grad!.toArray())], [8, 10, 12]);
    const opt = new SGD({ params: [w], lr: 0 });
    opt.zeroGrad();
    assert.equal(w.grad, null);
  });

  it('a tensor used twice gets both contributions (diamond graph)', async () => {
    const x = tensor(device, [1, -2, 3], [3]).requireGrad();
    tidy(() => {
      const h = relu(x);
      sum(add(mul(h, h), h)).backward(); // d/dx = (2h + 1)·[x > 0]
    });
    assert.deepEqual([...(await x.grad!.toArray())], [3, 0, 7]);
  });

  it('records nothing under noGrad', () => {
    const w = tensor(device, [1, 2], [2]).requireGrad();
    const y = noGrad(() => mean(mul(w, w)));
    assert.equal(y.requiresGrad, false);
    assert.throws(() => y.backward(), /does not require grad/);
  });

  it('refuses backward of a non-scalar without a gradient', () => {
    const w = tensor(device, [1, 2], [2]).requireGrad();
    assert.throws(() => mul(w, w).backward(), /pass a gradient/);
  });
});

describe('training', () => {
  it('a 2-layer MLP trained with plain SGD reaches ≥ 95% training accuracy', async () => {
    const { x: xs, y: ys, dim } = xorDataset(512, 7);
    const x = tensor(device, xs, [512, dim]);
    const y = tensor(device, ys, [512], 'i32');
    const params = mlp(new Rng(1), dim, 64, 2);
    const opt = new SGD({ params, lr: 0.5 });
    for (let step = 0; step < 400; step++) {
      tidy(() => softmaxCrossEntropy(forward(x, params), y).backward());
      opt.step();
      opt.zeroGrad();
    }
    const acc = await tidy(() => accuracy(forward(x, params), y)).item();
    assert.ok(acc >= 0.95, `training accuracy ${acc}`);
  });

});
