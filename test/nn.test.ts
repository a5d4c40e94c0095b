// Modules: names and state dicts as PyTorch's, train/eval propagation,
// initialisation, a ResNet basic block against a float64 reference composed from
// the reference ops, and a small CNN trained end to end.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type Device, Rng, SGD, type Tensor, accuracy, keep, nn, noGrad, softmaxCrossEntropy, tensor, tidy,
} from '../engine/index.ts';
import { assertClose, destroyTestDevice, randomArr, testDevice } from './helpers.ts';
import { type Arr, arr, refAdd } from './reference.ts';
import { refBatchNorm2d, refConv2d, refSubsamplePadChannels } from './reference-conv.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

async function values(t: Tensor): Promise<number[]> {
  return [...(t.dtype === 'i32' ? await t.toInt32Array() : await t.toArray())];
}

class TwoConvs extends nn.Module {
  readonly conv1: nn.Conv2d;
  readonly bn1: nn.BatchNorm2d;
  // found without register(), named after the field
  readonly head: nn.Sequential;

  constructor(seed: number) {
    super();
    const rng = new Rng(seed);
    this.conv1 = this.register('conv1', new nn.Conv2d(device, 3, 4, 3, { padding: 1, bias: false, rng }));
    this.bn1 = this.register('bn1', new nn.BatchNorm2d(device, 4));
    this.head = new nn.Sequential(new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(device, 4, 2, { rng }));
  }

  forward(x: Tensor): Tensor {
    return this.head.forward(this.bn1.forwardRelu(this.conv1.forward(x)));
  }
}

describe('Module', () => {
  it('names parameters and buffers as PyTorch does, children in order', () => {
    const m = new TwoConvs(1);
    assert.deepEqual(
      m.namedParameters().map(([k]) => k),
      ['conv1.weight', 'bn1.weight', 'bn1.bias', 'head.2.weight', 'head.2.bias'],
    );
    assert.deepEqual(
      m.namedBuffers().map(([k]) => k),
      ['bn1.running_mean', 'bn1.running_var', 'bn1.num_batches_tracked'],
    );
    assert.deepEqual(Object.keys(m.stateDict()), [
      'conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean', 'bn1.running_var', 'bn1.num_batches_tracked', 'head.2.weight', 'head.2.bias',
    ]);
    assert.ok(m.parameters().every((p) => p.requiresGrad));
    assert.ok(m.buffers().every((b) => !b.requiresGrad));
    assert.equal(m.bn1.numBatchesTracked!.dtype, 'i32');
    assert.deepEqual(m.bn1.numBatchesTracked!.shape, []);
    m.dispose();
  });

  it('torchvision BasicBlock keys, with a projection shortcut and without', () => {
    const down = new nn.BasicBlock(device, 4, 8, { stride: 2, seed: 1 });
    const seq = new nn.Sequential(new nn.BasicBlock(device, 8, 8, { seed: 2 }), down);
    const keys = Object.keys(seq.stateDict());
    assert.deepEqual(keys.slice(0, 12), [
      '0.conv1.weight', '0.bn1.weight', '0.bn1.bias', '0.bn1.running_mean', '0.bn1.running_var', '0.bn1.num_batches_tracked',
      '0.conv2.weight', '0.bn2.weight', '0.bn2.bias', '0.bn2.running_mean', '0.bn2.running_var', '0.bn2.num_batches_tracked',
    ]);
    assert.ok(keys.includes('1.downsample.0.weight') && keys.includes('1.downsample.1.running_var'));
    assert.equal(keys.length, 12 + 12 + 6);
    const optionA = new nn.BasicBlock(device, 4, 8, { stride: 2, shortcut: 'A' });
    assert.ok(!Object.keys(optionA.stateDict()).some((k) => k.startsWith('downsample')), 'option A has no parameters');
    for (const m of [seq, optionA]) m.dispose();
  });

  it('train() and eval() reach every descendant', () => {
    const m = new nn.Sequential(new TwoConvs(1), new nn.Sequential(new nn.ReLU()));
    assert.ok(m.modules().every((c) => c.training));
    m.eval();
    assert.equal(m.modules().length, 10);
    assert.ok(m.modules().every((c) => !c.training));
    m.train();
    assert.ok(m.modules().every((c) => c.training));
    m.dispose();
  });

  it('stateDict → loadStateDict round-trips, from tensors and from arrays', async () => {
    const a = new TwoConvs(1);
    const b = new TwoConvs(2);
    // change a's buffers so they are not the defaults
    tidy(() => void a.forward(randomTensor([2, 3, 5, 5], 3)));
    assert.notDeepEqual(await values(a.conv1.weight), await values(b.conv1.weight));
    b.loadStateDict(a.stateDict());
    for (const [k, t] of Object.entries(a.stateDict())) assert.deepEqual(await values(b.stateDict()[k]!), await values(t), k);
    assert.equal(await b.bn1.numBatchesTracked!.item(), 1);

    const c = new TwoConvs(3);
    const arrays: Record<string, number[]> = {};
    for (const [k, t] of Object.entries(a.stateDict())) arrays[k] = await values(t);
    c.loadStateDict(arrays);
    for (const [k, t] of Object.entries(a.stateDict())) assert.deepEqual(await values(c.stateDict()[k]!), await values(t), k);
    for (const m of [a, b, c]) m.dispose();
  });

  it('loadStateDict refuses missing, unexpected and mis-shaped entries (unless not strict)', () => {
    const m = new TwoConvs(1);
    const sd: Record<string, Tensor | number[]> = { ...m.stateDict() };
    delete sd['bn1.bias'];
    sd['bn2.weight'] = [1];
    assert.throws(() => m.loadStateDict(sd), /missing keys bn1\.bias; unexpected keys bn2\.weight/);
    assert.deepEqual(m.loadStateDict(sd, { strict: false }), { missingKeys: ['bn1.bias'], unexpectedKeys: ['bn2.weight'] });
    assert.throws(() => m.loadStateDict({ ...m.stateDict(), 'conv1.weight': [1, 2, 3] }), /'conv1.weight' has 3 values, the module expects 108 \(shape \[4, 3, 3, 3\]\)/);
    const wrong = tensor(device, new Float32Array(4), [2, 2]);
    assert.throws(() => m.loadStateDict({ ...m.stateDict(), 'bn1.weight': wrong }), /'bn1.weight' has shape \[2, 2\], the module expects \[4\]/);
    wrong.dispose();
    m.dispose();
  });

  it('initialises as PyTorch: kaiming_uniform(a=√5) bounds, BN ones/zeros, seeded', async () => {
    const conv = new nn.Conv2d(device, 16, 32, 3, { seed: 4 });
    const bound = 1 / Math.sqrt(16 * 9);
    const w = await values(conv.weight);
    assert.ok(w.every((v) => Math.abs(v) <= bound));
    assert.ok(Math.max(...w.map(Math.abs)) > 0.95 * bound, 'weights fill the range');
    // U(−b, b) has variance b²/3
    const variance = w.reduce((s, v) => s + v * v, 0) / w.length;
    assert.ok(Math.abs(variance / (bound * bound / 3) - 1) < 0.1, `weight variance ${variance}`);
    assert.ok((await values(conv.bias!)).every((v) => Math.abs(v) <= bound));
    const again = new nn.Conv2d(device, 16, 32, 3, { seed: 4 });
    assert.deepEqual(await values(again.weight), w, 'same seed, same weights');

    const lin = new nn.Linear(device, 50, 10, { seed: 1 });
    assert.ok((await values(lin.weight)).every((v) => Math.abs(v) <= 1 / Math.sqrt(50)));

    const bn = new nn.BatchNorm2d(device, 3);
    assert.deepEqual(await values(bn.weight!), [1, 1, 1]);
    assert.deepEqual(await values(bn.bias!), [0, 0, 0]);
    assert.deepEqual(await values(bn.runningMean!), [0, 0, 0]);
    assert.deepEqual(await values(bn.runningVar!), [1, 1, 1]);
    assert.deepEqual(await values(bn.numBatchesTracked!), [0]);
    const plain = new nn.BatchNorm2d(device, 3, { affine: false, trackRunningStats: false });
    assert.deepEqual(Object.keys(plain.stateDict()), []);

    // He init for ResNets: N(0, 2/fan_out), fan_out = 32·9
    nn.kaimingNormal(conv.weight, { seed: 2 });
    const k = await values(conv.weight);
    const std = Math.sqrt(k.reduce((s, v) => s + v * v, 0) / k.length);
    assert.ok(Math.abs(std / Math.sqrt(2 / (32 * 9)) - 1) < 0.05, `kaimingNormal std ${std}`);
    for (const m of [conv, again, lin, bn, plain]) m.dispose();
  });
});

function randomTensor(shape: number[], seed: number): Tensor {
  return tensor(device, randomArr(new Rng(seed), shape).data, shape);
}

// ------------------------------------------------------------ ResNet block

interface BlockCase {
  batch: number;
  inPlanes: number;
  planes: number;
  size: number;
  stride: number;
  shortcut: 'A' | 'B';
  seed: number;
}

/**
 * The block in float64, composed from the reference ops, forward and backward:
 * returns the output and the gradients of x and of every parameter by state-dict key.
 */
function referenceBlock(c: BlockCase, x: Arr, p: Record<string, Arr>, g: Arr | null): { y: Arr; grads: Record<string, Arr> } {
  const conv1 = refConv2d(c.stride, 1);
  const conv2 = refConv2d(1, 1);
  const bnRelu = refBatchNorm2d({ training: true, relu: true });
  const bnAddRelu = refBatchNorm2d({ training: true, relu: true, residual: true });
  const bnPlain = refBatchNorm2d({ training: true });
  const proj = refConv2d(c.stride, 0);
  const pad = refSubsamplePadChannels(c.planes, c.stride, Math.floor((c.planes - c.inPlanes) / 2));
  const reshapes = c.stride !== 1 || c.inPlanes !== c.planes;

  const a1 = conv1.forward([x, p['conv1.weight']!]);
  const h1 = bnRelu.forward([a1, p['bn1.weight']!, p['bn1.bias']!]);
  const a2 = conv2.forward([h1, p['conv2.weight']!]);
  let ad: Arr | null = null;
  let sc = x;
  if (reshapes && c.shortcut === 'B') {
    ad = proj.forward([x, p['downsample.0.weight']!]);
    sc = bnPlain.forward([ad, p['downsample.1.weight']!, p['downsample.1.bias']!]);
  } else if (reshapes) {
    sc = pad.forward([x]);
  }
  const y = bnAddRelu.forward([a2, p['bn2.weight']!, p['bn2.bias']!, sc]);
  if (!g) return { y, grads: {} };

  const grads: Record<string, Arr> = {};
  const [da2, dg2, db2, dsc] = bnAddRelu.backward([a2, p['bn2.weight']!, p['bn2.bias']!, sc], g);
  grads['bn2.weight'] = dg2!;
  grads['bn2.bias'] = db2!;
  const [dh1, dw2] = conv2.backward([h1, p['conv2.weight']!], da2!);
  grads['conv2.weight'] = dw2!;
  const [da1, dg1, db1] = bnRelu.backward([a1, p['bn1.weight']!, p['bn1.bias']!], dh1!);
  grads['bn1.weight'] = dg1!;
  grads['bn1.bias'] = db1!;
  const [dx1, dw1] = conv1.backward([x, p['conv1.weight']!], da1!);
  grads['conv1.weight'] = dw1!;
  let dxShortcut = dsc!;
  if (ad) {
    const [dad, dgd, dbd] = bnPlain.backward([ad, p['downsample.1.weight']!, p['downsample.1.bias']!], dsc!);
    grads['downsample.1.weight'] = dgd!;
    grads['downsample.1.bias'] = dbd!;
    const [dxd, dwd] = proj.backward([x, p['downsample.0.weight']!], dad!);
    grads['downsample.0.weight'] = dwd!;
    dxShortcut = dxd!;
  } else if (reshapes) {
    dxShortcut = pad.backward([x], dsc!)[0]!;
  }
  grads.x = refAdd.forward([dx1!, dxShortcut]);
  return { y, grads };
}

describe('ResNet basic block', () => {
  // Tolerances: two convolutions and two batchnorm backwards in series; each
  // batchnorm backward subtracts per-channel means of the incoming gradient,
  // which cancels most of it. On lavapipe every gradient is within 1e-5 of the
  // largest magnitude (+1e-4 relative); 3e-5 / 3e-4 leaves room for GPUs that
  // contract or order the sums differently. Seeds are fixed: a pre-activation within f32 rounding
  // of a relu's kink would otherwise flip a gradient element at random.
  const TOL = { atol: 3e-5, rtol: 3e-4 };
  const cases: BlockCase[] = [
    { batch: 2, inPlanes: 6, planes: 6, size: 7, stride: 1, shortcut: 'B', seed: 1 },
    { batch: 3, inPlanes: 4, planes: 8, size: 9, stride: 2, shortcut: 'B', seed: 2 },
    { batch: 3, inPlanes: 4, planes: 8, size: 9, stride: 2, shortcut: 'A', seed: 3 },
    { batch: 1, inPlanes: 16, planes: 32, size: 8, stride: 2, shortcut: 'B', seed: 4 },
  ];
  for (const c of cases) {
    it(`${c.inPlanes} → ${c.planes}, stride ${c.stride}${c.stride === 1 ? ' (identity)' : `, shortcut ${c.shortcut}`}, batch ${c.batch}: forward and every gradient`, async () => {
      const rng = new Rng(c.seed);
      const block = new nn.BasicBlock(device, c.inPlanes, c.planes, { stride: c.stride, shortcut: c.shortcut, rng });
      // parameters random (γ away from 0, β nonzero) so every path carries signal
      const params: Record<string, Arr> = {};
      for (const [k, t] of block.namedParameters()) {
        params[k] = k.endsWith('.weight') && t.rank === 1 ? randomArr(rng, [...t.shape], 0.5, 1.5) : randomArr(rng, [...t.shape], -0.5, 0.5);
      }
      block.loadStateDict(Object.fromEntries(Object.entries(params).map(([k, a]) => [k, a.data])), { strict: false });
      const x = randomArr(rng, [c.batch, c.inPlanes, c.size, c.size]);
      const { y: want } = referenceBlock(c, x, params, null);
      const g = randomArr(rng, want.shape);
      const { grads } = referenceBlock(c, x, params, g);

      const { y, xt } = tidy(() => {
        const xt = keep(tensor(device, x.data, x.shape).requireGrad());
        const y = block.forward(xt);
        y.backward(tensor(device, g.data, g.shape));
        return { y, xt };
      });
      assertClose(await y.toArray(), want, { atol: 1e-5, rtol: 1e-4 }, 'block forward');
      assertClose(await xt.grad!.toArray(), grads.x!, TOL, 'block grad x');
      for (const [k, t] of block.namedParameters()) assertClose(await t.grad!.toArray(), grads[k]!, TOL, `block grad ${k}`);
      // the running statistics moved once
      assert.equal(await block.bn1.numBatchesTracked!.item(), 1);
      for (const t of [y, xt]) {
        t.grad?.dispose();
        t.dispose();
      }
      block.dispose();
    });
  }
});

// ------------------------------------------------------------ end to end

/**
 * Four classes of 3×12×12 noisy images: a horizontal bar, a vertical bar, a
 * diagonal, a 3×3 blob, each at a random place, in a random colour mix.
 */
function patterns(n: number, rng: Rng): { x: Float32Array; y: Int32Array } {
  const S = 12;
  const x = new Float32Array(n * 3 * S * S);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const cls = i % 4;
    y[i] = cls;
    const colour = [rng.uniform(0.5, 1), rng.uniform(0.5, 1), rng.uniform(0.5, 1)];
    const at = 1 + rng.int(S - 3);
    const on = (r: number, c: number): boolean => {
      switch (cls) {
        case 0:
          return r === at || r === at + 1;
        case 1:
          return c === at || c === at + 1;
        case 2:
          return Math.abs(r - c - (at - S / 2)) <= 1;
        default:
          return r >= at && r < at + 3 && c >= at && c < at + 3;
      }
    };
    for (let ch = 0; ch < 3; ch++)
      for (let r = 0; r < S; r++)
        for (let c = 0; c < S; c++) x[((i * 3 + ch) * S + r) * S + c] = 0.3 * rng.normal() + (on(r, c) ? 1.5 * colour[ch]! : 0);
  }
  return { x, y };
}

describe('end to end', () => {
  it('a small CNN (conv-bn-relu ×2, pooling, linear) with SGD reaches ≥ 95% training accuracy', async () => {
    // The clock starts after the first step, whose time is mostly shader
    // compilation (tens of seconds on lavapipe with a cold Mesa shader cache).
    let start = performance.now();
    const rng = new Rng(42);
    const N = 256;
    const B = 32;
    const S = 12;
    const data = patterns(N, rng);
    const model = new nn.Sequential(
      new nn.Conv2d(device, 3, 8, 3, { padding: 1, rng }),
      new nn.BatchNorm2d(device, 8),
      new nn.ReLU(),
      new nn.MaxPool2d(2),
      new nn.Conv2d(device, 8, 16, 3, { padding: 1, rng }),
      new nn.BatchNorm2d(device, 16),
      new nn.ReLU(),
      new nn.AdaptiveAvgPool2d(1),
      new nn.Flatten(),
      new nn.Linear(device, 16, 4, { rng }),
    );
    const opt = new SGD({ params: model.namedParameters(), lr: 0.05, momentum: 0.9 });
    const allX = keep(tensor(device, data.x, [N, 3, S, S]));
    const allY = keep(tensor(device, data.y, [N], 'i32'));
    const trainAccuracy = async (): Promise<number> => {
      model.eval();
      const acc = noGrad(() => tidy(() => accuracy(model.forward(allX), allY)));
      model.train();
      const v = await acc.item();
      acc.dispose();
      return v;
    };

    const order = Array.from({ length: N }, (_, i) => i);
    let acc = 0;
    let epoch = 0;
    let firstLoss = NaN;
    let lastLoss = NaN;
    for (; epoch < 40 && acc < 0.97; epoch++) {
      rng.shuffle(order);
      let loss: Tensor | null = null;
      for (let b = 0; b < N / B; b++) {
        const xb = new Float32Array(B * 3 * S * S);
        const yb = new Int32Array(B);
        for (let j = 0; j < B; j++) {
          const i = order[b * B + j]!;
          xb.set(data.x.subarray(i * 3 * S * S, (i + 1) * 3 * S * S), j * 3 * S * S);
          yb[j] = data.y[i]!;
        }
        loss?.dispose();
        loss = tidy(() => {
          const l = softmaxCrossEntropy(model.forward(tensor(device, xb, [B, 3, S, S])), tensor(device, yb, [B], 'i32'));
          l.backward();
          opt.step();
          opt.zeroGrad();
          return l;
        });
        if (epoch === 0 && b === 0) {
          await loss.item();
          start = performance.now();
        }
      }
      lastLoss = await loss!.item();
      loss!.dispose();
      if (epoch === 0) firstLoss = lastLoss;
      acc = await trainAccuracy();
    }
    const seconds = (performance.now() - start) / 1000;
    console.log(`end to end: ${epoch} epochs, ${seconds.toFixed(1)} s after the first step, loss ${firstLoss.toFixed(3)} → ${lastLoss.toFixed(3)}, accuracy ${acc}`);
    assert.ok(acc >= 0.95, `training accuracy ${acc} after ${epoch} epochs`);
    assert.ok(seconds < 60, `took ${seconds.toFixed(1)} s`);
    allX.dispose();
    allY.dispose();
    opt.dispose();
    model.dispose();
  });
});
