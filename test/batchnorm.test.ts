// batchNorm2d and its fused variants (relu, + residual, + residual then relu) in
// training and eval mode against the float64 reference on fast-check shapes;
// running statistics over several steps (momentum 0.1 and cumulative); a constant
// channel; a large mean with a tiny spread (where a one-pass Σx² − (Σx)²/n in f32
// loses every digit) and outliers where the one-pass lanes take their shift; the
// GPU layouts (64-lane tree reductions, planes per workgroup) as well as the CPU
// rasteriser ones (8-lane subgroup reductions, channel runs): on lavapipe both
// run; bad inputs.
//
// Tolerances: the forward is a per-element affine map of a shifted one-pass statistic,
// within the default (1e-5 of the largest magnitude + 1e-4 relative). Gradients
// go through per-channel sums over up to 5·33·33 values and the subtraction
// g − Σg/M − ĥ·Σgĥ/M, so they get 3e-5 absolute. Running statistics: 1e-5
// relative to their magnitude after 3 steps.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type Device, Rng, type Tensor, batchNorm2d, tensor, tidy, zeros, ones } from '../engine/index.ts';
import { assertClose, checkOp, checkRefGrad, destroyTestDevice, randomArr, setPolicy, testDevice } from './helpers.ts';
import { type Arr, arr } from './reference.ts';
import { type RefBatchNormOptions, avoidReluKink, refBatchNorm2d, refChannelStats, refRunningUpdate } from './reference-conv.ts';
import { isSoftwareAdapter } from '../kernels/common.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const GRAD_TOL = { atol: 3e-5, rtol: 1e-4 };

/** γ with |γ| in [0.1, 1.5], so a nudge of x moves the output */
function randomGamma(rng: Rng, c: number): Arr {
  return arr([c], Array.from({ length: c }, () => Math.fround((rng.next() < 0.5 ? -1 : 1) * rng.uniform(0.1, 1.5))));
}


interface BnCase {
  batch: number;
  channels: number;
  h: number;
  w: number;
  affine: boolean;
  relu: boolean;
  residual: boolean;
  seed: number;
}

const bnCase: fc.Arbitrary<BnCase> = fc
  .record({
    batch: fc.constantFrom(1, 2, 3, 5),
    channels: fc.constantFrom(1, 3, 5, 16, 17),
    h: fc.integer({ min: 1, max: 33 }),
    w: fc.integer({ min: 1, max: 33 }),
    affine: fc.boolean(),
    relu: fc.boolean(),
    residual: fc.boolean(),
    seed: fc.nat(),
  })
  .filter((c) => c.batch * c.h * c.w > 1);

async function checkBn(c: BnCase, training: boolean): Promise<void> {
  const rng = new Rng(c.seed);
  const shape = [c.batch, c.channels, c.h, c.w];
  const x = randomArr(rng, shape, -2, 3);
  const gamma = c.affine ? randomGamma(rng, c.channels) : arr([c.channels], new Array<number>(c.channels).fill(1));
  const beta = c.affine ? randomArr(rng, [c.channels]) : arr([c.channels]);
  const res = randomArr(rng, shape);
  const runningMean = Array.from({ length: c.channels }, () => Math.fround(rng.uniform(-1, 1)));
  const runningVar = Array.from({ length: c.channels }, () => Math.fround(rng.uniform(0.2, 2)));
  const o: RefBatchNormOptions = { training, relu: c.relu, residual: c.residual, runningMean, runningVar };
  const inputs = [x, gamma, beta, ...(c.residual ? [res] : [])];
  if (c.relu) avoidReluKink(inputs, o);
  const refOp = refBatchNorm2d(o);
  // In training the input gradient divides by each channel's batch std: with few values
  // per channel drawn close together (2 values 0.01 apart) f32 rounding grows by 1/σ
  // (seen: |err| 4.8e-5 at σ ≈ 0.005), so the gradient tolerance does too.
  let minStd = Infinity;
  if (training) {
    const n = c.batch * c.h * c.w;
    for (let ch = 0; ch < c.channels; ch++) {
      const vals: number[] = [];
      for (let b = 0; b < c.batch; b++) for (let i = 0; i < c.h * c.w; i++) vals.push(x.data[(b * c.channels + ch) * c.h * c.w + i]!);
      const mean = vals.reduce((a, v) => a + v, 0) / n;
      minStd = Math.min(minStd, Math.sqrt(vals.reduce((a, v) => a + (v - mean) ** 2, 0) / n + 1e-5));
    }
  }
  const scaleTol = Math.max(1, 0.05 / minStd);
  await checkOp(device, {
    // affine off: γ = 1, β = 0 are the reference's inputs but not the op's
    inputs,
    grad: [true, c.affine, c.affine, true],
    gpu: ([tx, tg, tb, tr]) =>
      batchNorm2d(tx!, {
        training,
        weight: c.affine ? tg : null,
        bias: c.affine ? tb : null,
        runningMean: tensor(device, runningMean, [c.channels]),
        runningVar: tensor(device, runningVar, [c.channels]),
        relu: c.relu,
        residual: c.residual ? tr : null,
      }),
    ref: refOp,
    gradTol: { atol: GRAD_TOL.atol * scaleTol, rtol: GRAD_TOL.rtol },
    seed: c.seed,
  });
}

/** x = 1000 + 0.01·noise, image 0 shifted by 0.1 (10σ): [6, 2, 16, 16]. */
function outlierBatch(seed: number): Arr {
  const rng = new Rng(seed);
  const x = arr([6, 2, 16, 16]);
  for (let i = 0; i < x.data.length; i++) x.data[i] = Math.fround(1000 + 0.01 * rng.normal() + (i < 512 ? 0.1 : 0));
  return x;
}

/**
 * Small planes (1, 3, 2×2 = one vec4: lanes past the plane), and planes of 256 and
 * 33·33 values over enough images that each channel's reduction splits into runs,
 * the last one short (40 = 16 + 16 + 8 images; 5 = 4 + 1).
 */
const SMALL_AND_SPLIT: BnCase[] = [
  [6, 3, 1, 1],
  [3, 2, 1, 3],
  [4, 3, 2, 2],
  [40, 3, 16, 16],
  [5, 3, 33, 33],
].map(([batch, channels, h, w], i) => ({ batch: batch!, channels: channels!, h: h!, w: w!, affine: true, relu: true, residual: i % 2 === 0, seed: 100 + i }));

/** One training step with momentum 1: the running statistics are the batch's; both within `rtol` of float64. */
async function checkRunningStats(x: Arr, rtol: number): Promise<void> {
  const want = refChannelStats(x);
  const C = x.shape[1]!;
  const rm = zeros(device, [C]);
  const rv = ones(device, [C]);
  tidy(() => {
    batchNorm2d(tensor(device, x.data, x.shape), { training: true, runningMean: rm, runningVar: rv, momentum: 1 });
  });
  const gotVar = await rv.toArray();
  const gotMean = await rm.toArray();
  for (let c = 0; c < C; c++) {
    const unbiased = (want.variance[c]! * want.count) / (want.count - 1);
    assert.ok(Math.abs(gotVar[c]! - unbiased) / unbiased < rtol, `channel ${c}: variance ${gotVar[c]}, reference ${unbiased}`);
    const spread = Math.sqrt(want.variance[c]!);
    // within a thousandth of the spread, or 1e-7 of the mean where that is larger (1000 has f32 ulps of 6e-5)
    assert.ok(Math.abs(gotMean[c]! - want.mean[c]!) <= Math.max(1e-3 * spread, 1e-7 * Math.abs(want.mean[c]!)), `channel ${c}: mean ${gotMean[c]}, reference ${want.mean[c]}`);
  }
  rm.dispose();
  rv.dispose();
}

describe('batchNorm2d', () => {
  it('training mode, fused relu / residual, matches the reference', async () => {
    await fc.assert(fc.asyncProperty(bnCase, (c) => checkBn(c, true)), { numRuns: 15 });
  });

  it('eval mode (running statistics), fused relu / residual, matches the reference', async () => {
    await fc.assert(fc.asyncProperty(bnCase, (c) => checkBn(c, false)), { numRuns: 10 });
  });

  it('CIFAR-sized batch: 64 channels of 32·16·16 values (split reductions)', async () => {
    const rng = new Rng(2);
    const inputs = [randomArr(rng, [32, 64, 16, 16], -1, 2), randomGamma(rng, 64), randomArr(rng, [64]), randomArr(rng, [32, 64, 16, 16])];
    const o: RefBatchNormOptions = { training: true, relu: true, residual: true };
    avoidReluKink(inputs, o);
    await checkOp(device, {
      inputs,
      gpu: ([x, g, b, r]) => batchNorm2d(x!, { training: true, weight: g, bias: b, residual: r, relu: true }),
      ref: refBatchNorm2d(o),
      gradTol: GRAD_TOL,
    });
  });

  for (const momentum of [0.1, 0.25, null]) {
    it(`running statistics after 3 steps match PyTorch's update (momentum ${momentum})`, async () => {
      const rng = new Rng(9);
      const C = 5;
      const rm = zeros(device, [C]);
      const rv = ones(device, [C]);
      const nbt = tensor(device, [0], [], 'i32');
      const state = { mean: new Array<number>(C).fill(0), variance: new Array<number>(C).fill(1), batches: 0 };
      for (let step = 0; step < 3; step++) {
        const x = randomArr(rng, [3, C, 4 + step, 5], -1 + step, 2 + 2 * step);
        tidy(() => {
          batchNorm2d(tensor(device, x.data, x.shape), { training: true, runningMean: rm, runningVar: rv, numBatchesTracked: nbt, momentum });
        });
        refRunningUpdate(x, state, momentum);
      }
      const tol = { atol: 1e-6, rtol: 1e-5 };
      assertClose(await rm.toArray(), arr([C], state.mean), tol, 'running_mean');
      assertClose(await rv.toArray(), arr([C], state.variance), tol, 'running_var');
      assert.equal(await nbt.item(), 3, 'num_batches_tracked');

      // eval mode now normalises with exactly these statistics
      const x = randomArr(rng, [2, C, 3, 3]);
      await checkOp(device, {
        inputs: [x, randomGamma(rng, C), randomArr(rng, [C])],
        gpu: ([tx, g, b]) => batchNorm2d(tx!, { training: false, weight: g, bias: b, runningMean: rm, runningVar: rv }),
        ref: refBatchNorm2d({ training: false, runningMean: state.mean.map(Math.fround), runningVar: state.variance.map(Math.fround) }),
        tol: { atol: 1e-5, rtol: 1e-4 },
      });
      for (const t of [rm, rv, nbt]) t.dispose();
    });
  }

  it('an f32 num_batches_tracked counts too', async () => {
    const nbt = tensor(device, [4], []);
    const rm = zeros(device, [2]);
    const rv = ones(device, [2]);
    tidy(() => {
      const x = tensor(device, [1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2, 1]);
      batchNorm2d(x, { training: true, runningMean: rm, runningVar: rv, numBatchesTracked: nbt, momentum: null });
    });
    assert.equal(await nbt.item(), 5);
    // cumulative factor 1/5: running_mean = 4/5·0 + 1/5·batch mean
    // channel means 3.5 and 5.5; cumulative factor 1/5 after 4 earlier batches
    assertClose(await rm.toArray(), arr([2], [3.5 / 5, 5.5 / 5]), { atol: 1e-6, rtol: 1e-6 }, 'running_mean');
    for (const t of [nbt, rm, rv]) t.dispose();
  });

  it('a constant channel gives finite outputs and gradients, and zero variance', async () => {
    const rng = new Rng(4);
    const x = randomArr(rng, [3, 2, 4, 4]);
    for (let n = 0; n < 3; n++) for (let i = 0; i < 16; i++) x.data[(n * 2 + 1) * 16 + i] = 3.7;
    const rm = zeros(device, [2]);
    const rv = ones(device, [2]);
    await checkOp(device, {
      inputs: [x, randomGamma(rng, 2), randomArr(rng, [2])],
      gpu: ([tx, g, b]) => batchNorm2d(tx!, { training: true, weight: g, bias: b, runningMean: rm, runningVar: rv, momentum: 1 }),
      ref: refBatchNorm2d({ training: true }),
      gradTol: GRAD_TOL,
    });
    const v = await rv.toArray();
    assert.equal(v[1], 0, 'unbiased variance of a constant channel');
    rm.dispose();
    rv.dispose();
  });

  it('statistics stay accurate for a large mean and a tiny spread (no one-pass Σx²)', async () => {
    const rng = new Rng(6);
    const x = arr([8, 1, 32, 32]);
    for (let i = 0; i < x.data.length; i++) x.data[i] = Math.fround(1000 + 0.01 * rng.normal());
    // a one-pass E[x²] − E[x]² in f32 would be off by about 1e6·6e-8 = 0.06 against a variance of 1e-4
    await checkRunningStats(x, 1e-3);
  });

  it('statistics stay accurate when the values each lane shifts by are outliers', async () => {
    // the one-pass lanes subtract their own first value, taken from the first image
    // of their run: make image 0 an outlier (10σ), on a large mean where an unshifted
    // Σx² would lose every digit
    await checkRunningStats(outlierBatch(7), 1e-3);
  });

  it('planes of 1, 3, 4 and 33·33 values; several runs of images per channel with a short last one', async () => {
    for (const c of SMALL_AND_SPLIT) {
      await checkBn(c, true);
      await checkBn({ ...c, seed: c.seed + 1 }, false);
    }
  });

  it('a NaN in the input stays NaN through the fused relu (as PyTorch), so the divergence check can see it', async () => {
    // max(NaN, 0) gave 0 on lavapipe: a NaN weight then trained on at a finite loss
    const vals = Float32Array.from({ length: 2 * 2 * 3 * 3 }, (_, i) => Math.sin(i));
    vals[4] = NaN; // channel 0 of image 0
    const y = tidy(() => {
      const x = tensor(device, vals, [2, 2, 3, 3]);
      return batchNorm2d(x, { training: false, runningMean: zeros(device, [2]), runningVar: ones(device, [2]), relu: true });
    });
    const out = await y.toArray();
    y.dispose();
    assert.ok(Number.isNaN(out[4]!), `relu(NaN) gave ${out[4]}`);
    assert.ok(out.filter((v) => Number.isNaN(v)).length === 1, 'only the NaN element is NaN');
  });

  it('eval mode takes an empty batch; training refuses it', () => {
    tidy(() => {
      const x = tensor(device, [], [0, 3, 4, 4]);
      const rm = zeros(device, [3]);
      const rv = ones(device, [3]);
      assert.deepEqual(batchNorm2d(x, { training: false, runningMean: rm, runningVar: rv, relu: true }).shape, [0, 3, 4, 4]);
      assert.throws(() => batchNorm2d(x, { training: true, runningMean: rm, runningVar: rv }), /more than 1 value per channel/);
    });
  });

  it('the GPU layouts (64-lane tree reductions, planes per workgroup) match the reference too', async (t) => {
    if (!isSoftwareAdapter(device)) return t.skip('the GPU layouts already ran above');
    const restore = setPolicy(device, { batchnorm: { cpuLayouts: false } });
    try {
      await fc.assert(fc.asyncProperty(bnCase, (c) => checkBn(c, true)), { numRuns: 8 });
      await fc.assert(fc.asyncProperty(bnCase, (c) => checkBn(c, false)), { numRuns: 4 });
      await checkRunningStats(outlierBatch(9), 1e-3);
      for (const c of SMALL_AND_SPLIT) await checkBn(c, true);
    } finally {
      restore();
    }
  });

  it('merging the partials in the normalise and grad-input kernels (fusion.bnMerge) or in merge dispatches: both match the reference, on both layouts', async () => {
    // many partials per channel (20 and 64 runs of one image: each of the 8-lane layout's lanes merges several,
    // the 64-lane tree's lanes past the last take none), besides the small and split cases; both layouts, merged or not
    const many: BnCase[] = [
      { batch: 20, channels: 3, h: 64, w: 64, affine: true, relu: true, residual: true, seed: 300 },
      { batch: 64, channels: 2, h: 64, w: 64, affine: false, relu: true, residual: false, seed: 301 },
    ];
    for (const cpuLayouts of isSoftwareAdapter(device) ? [true, false] : [false]) {
      for (const bnMerge of [true, false]) {
        const restore = setPolicy(device, { batchnorm: { cpuLayouts }, fusion: { bnMerge } });
        try {
          for (const c of [...many, ...SMALL_AND_SPLIT]) await checkBn(c, true);
          await checkRunningStats(outlierBatch(11), 1e-3);
        } finally {
          restore();
        }
      }
    }
  });

  it('fusion.bnMerge saves the two merge dispatches of a training batchnorm, and keeps them for the cumulative average', () => {
    const count = (bnMerge: boolean, momentum: number | null): number => {
      const restore = setPolicy(device, { fusion: { bnMerge } });
      try {
        return tidy(() => {
          const x = tensor(device, Float32Array.from({ length: 4 * 3 * 4 * 4 }, (_, i) => Math.sin(i)), [4, 3, 4, 4]).requireGrad();
          const w = ones(device, [3]).requireGrad();
          const b = zeros(device, [3]).requireGrad();
          const running = { runningMean: zeros(device, [3]), runningVar: ones(device, [3]), numBatchesTracked: tensor(device, [0], [], 'i32') };
          const y = batchNorm2d(x, { training: true, weight: w, bias: b, relu: true, momentum, ...running });
          const dy = ones(device, y.shape);
          const before = device.executionStats().dispatches;
          y.backward(dy);
          return device.executionStats().dispatches - before;
        });
      } finally {
        restore();
      }
    };
    // what the batchnorm itself records, forward and backward: partials, (merge,) normalise; partials, (merge,) grad input
    assert.equal(count(false, 0.1) - count(true, 0.1), 1, 'the backward merge saved');
    assert.equal(count(false, null) - count(true, null), 1, 'the backward merge saved with the cumulative average too');
    const forward = (bnMerge: boolean, momentum: number | null): number => {
      const restore = setPolicy(device, { fusion: { bnMerge } });
      try {
        return tidy(() => {
          const x = tensor(device, Float32Array.from({ length: 4 * 3 * 4 * 4 }, (_, i) => Math.sin(i)), [4, 3, 4, 4]);
          const running = { runningMean: zeros(device, [3]), runningVar: ones(device, [3]), numBatchesTracked: tensor(device, [0], [], 'i32') };
          const before = device.executionStats().dispatches;
          batchNorm2d(x, { training: true, relu: true, momentum, ...running });
          return device.executionStats().dispatches - before;
        });
      } finally {
        restore();
      }
    };
    assert.equal(forward(true, 0.1), 2, 'partials and the normalise that merges them');
    assert.equal(forward(false, 0.1), 3, 'partials, merge, normalise');
    assert.equal(forward(true, null), 3, 'the cumulative average keeps its merge dispatch');
  });

  it('reference backward agrees with finite differences', () => {
    const rng = new Rng(8);
    for (const training of [true, false])
      for (const [relu, residual] of [
        [false, false],
        [true, false],
        [true, true],
      ] as const) {
        const o: RefBatchNormOptions = { training, relu, residual, runningMean: [0.1, -0.2, 0.3], runningVar: [0.5, 1, 2] };
        const inputs = [randomArr(rng, [2, 3, 2, 3]), randomGamma(rng, 3), randomArr(rng, [3]), ...(residual ? [randomArr(rng, [2, 3, 2, 3])] : [])];
        if (relu) avoidReluKink(inputs, o);
        checkRefGrad(refBatchNorm2d(o), inputs, { tol: 1e-5 });
      }
  });

  it('rejects bad inputs naming the op and the shapes', () => {
    const x = zeros(device, [2, 3, 4, 4]);
    const c = (n: number): Tensor => zeros(device, [n]);
    assert.throws(() => batchNorm2d(x.reshape([2, 3, 16]), { training: true }), /batchNorm2d: input must be NCHW \(rank 4\) \(input \[2, 3, 16\]\)/);
    assert.throws(() => batchNorm2d(x, { training: true, weight: c(4), bias: c(4) }), /batchNorm2d: weight \[4\] does not match 3 channels.*\[2, 3, 4, 4\]/);
    assert.throws(() => batchNorm2d(x, { training: true, weight: c(3) }), /weight and bias must be given together/);
    assert.throws(() => batchNorm2d(x, { training: false, runningMean: c(3), runningVar: c(2) }), /runningVar \[2\] does not match 3 channels/);
    assert.throws(
      () => batchNorm2d(x, { training: true, relu: true, residual: zeros(device, [2, 3, 4, 2]) }),
      /batchNormAddRelu: residual \[2, 3, 4, 2\] does not match the input \(input \[2, 3, 4, 4\]\)/,
    );
    assert.throws(() => batchNorm2d(zeros(device, [1, 3, 1, 1]), { training: true }), /expected more than 1 value per channel when training/);
    assert.throws(() => batchNorm2d(x, { training: true, runningMean: c(3), runningVar: c(3), momentum: null }), /needs numBatchesTracked/);
  });
});
