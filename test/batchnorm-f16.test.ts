// batchNorm2d, batchNormRelu and batchNormAddRelu on f16 activations (half-precision
// training: x, the residual, y and their gradients stored as f16; the statistics, γ, β,
// the running statistics and dγ, dβ f32; all arithmetic f32) against the float64
// reference, forward and every gradient, training and eval mode, on both kernel
// layouts (policy.batchnorm.cpuLayouts: subgroup reductions and channel runs, or
// 64-lane trees and planes) and both relu masks (policy.fusion.reluMask), vec4 and
// scalar planes, batch 1, channel counts that are not multiples of 4.
//
// The inputs are rounded to f16 on the host, so the casts to f16 are exact and the
// reference sees the values the kernels read; what is left is the rounding of y, of
// the upstream gradient (cast to f16 on its way in) and of dx and dresidual: a few
// 2^-11 relative (F16). The running statistics are f32 sums of those exact inputs:
// f32 tolerances.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type BatchNormOptions, type Device, Rng, type Tensor, batchNorm2d, batchNormAddRelu, batchNormRelu, cast, tensor, tidy } from '../engine/index.ts';
import { bnBackwardRequestOf, leavePrepared, leaveStatistics, takePrepared, takeStatistics } from '../engine/ops/fusion.ts';
import { F16_TOL, type Tolerance, assertClose, checkOp, destroyTestDevice, halfArr, randomArr, setPolicy, testDevice } from './helpers.ts';
import { type Arr, arr } from './reference.ts';
import { type RefBatchNormOptions, avoidReluKink, refBatchNorm2d, refChannelStats, refRunningUpdate } from './reference-conv.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

// y, dy, dx, dresidual each rounded to f16 once (2^-11 relative), as test/f16-storage.test.ts
const F16 = F16_TOL;
// the running statistics: f32 arithmetic on exactly representable inputs (as test/batchnorm.test.ts)
const RUNNING_TOL: Tolerance = { atol: 1e-6, rtol: 1e-5 };


/** γ with |γ| in [0.1, 1.5], so a nudge of x moves the output */
function randomGamma(rng: Rng, c: number): Arr {
  return arr([c], Array.from({ length: c }, () => Math.fround((rng.next() < 0.5 ? -1 : 1) * rng.uniform(0.1, 1.5))));
}

interface HalfCase {
  batch: number;
  channels: number;
  h: number;
  w: number;
  affine: boolean;
  relu: boolean;
  residual: boolean;
  /** the residual f16 (else f32 beside an f16 x: y is f16, its gradient f32) */
  halfResidual: boolean;
  /** policy.fusion.reluMask: the relu's backward mask recomputed from x, or read from y */
  reluMask: boolean;
  seed: number;
}

const halfCase: fc.Arbitrary<HalfCase> = fc
  .record({
    batch: fc.constantFrom(1, 2, 3, 5),
    channels: fc.constantFrom(1, 3, 5, 6, 17),
    h: fc.integer({ min: 1, max: 13 }),
    w: fc.integer({ min: 1, max: 13 }),
    affine: fc.boolean(),
    relu: fc.boolean(),
    residual: fc.boolean(),
    halfResidual: fc.boolean(),
    reluMask: fc.boolean(),
    seed: fc.nat(),
  })
  .filter((c) => c.batch * c.h * c.w > 1);

/**
 * Batch 1, planes of 1, 3, 2×2 and 4×4 (vec4) values, and planes of 16×16 (vec4) and
 * 33·33 (scalar) values over enough images that a channel's reductions split into runs
 * with a short last one (40 = 16 + 16 + 8 images; 5 = 4 + 1).
 */
const FIXED: HalfCase[] = [
  [1, 3, 4, 4],
  [1, 5, 3, 1],
  [6, 3, 1, 1],
  [2, 6, 2, 2],
  [40, 3, 16, 16],
  [5, 3, 33, 33],
].map(([batch, channels, h, w], i) => ({
  batch: batch!, channels: channels!, h: h!, w: w!, affine: true, relu: true, residual: i % 2 === 0, halfResidual: i % 3 !== 2, reluMask: i % 4 < 2, seed: 200 + i,
}));

/** avoidReluKink, with x rounded back to f16 after each nudge, until no pre-activation is within 1e-4 of 0. */
function clearKink(inputs: Arr[], o: RefBatchNormOptions): void {
  const pre = refBatchNorm2d({ ...o, relu: false });
  for (let round = 0; round < 10; round++) {
    avoidReluKink(inputs, o);
    inputs[0] = halfArr(inputs[0]!);
    if (pre.forward(inputs).data.every((v) => Math.abs(v) >= 1e-4)) return;
  }
  throw new Error('clearKink: could not clear the kink at f16');
}

/** The op under test for case c: batchNormRelu, batchNormAddRelu or batchNorm2d (with a residual, unfused relu-free). */
function bnOp(c: Pick<HalfCase, 'relu'>, x: Tensor, residual: Tensor | undefined, o: Omit<BatchNormOptions, 'relu' | 'residual'>): Tensor {
  if (c.relu) return residual ? batchNormAddRelu(x, residual, o) : batchNormRelu(x, o);
  return batchNorm2d(x, { ...o, residual: residual ?? null });
}

async function checkHalf(c: HalfCase, training: boolean, cpuLayouts: boolean): Promise<void> {
  const rng = new Rng(c.seed);
  const shape = [c.batch, c.channels, c.h, c.w];
  const C = c.channels;
  const x = halfArr(randomArr(rng, shape, -2, 3));
  const gamma = c.affine ? randomGamma(rng, C) : arr([C], new Array<number>(C).fill(1));
  const beta = c.affine ? randomArr(rng, [C]) : arr([C]);
  const res = c.halfResidual ? halfArr(randomArr(rng, shape)) : randomArr(rng, shape);
  const runningMean = Array.from({ length: C }, () => Math.fround(rng.uniform(-1, 1)));
  const runningVar = Array.from({ length: C }, () => Math.fround(rng.uniform(0.2, 2)));
  const o: RefBatchNormOptions = { training, relu: c.relu, residual: c.residual, runningMean, runningVar };
  const inputs = [x, gamma, beta, ...(c.residual ? [res] : [])];
  if (c.relu) clearKink(inputs, o);
  const xs = inputs[0]!;
  // training divides dx by each channel's batch std: a channel of few close values scales its rounding up (as test/batchnorm.test.ts)
  const minStd = training ? Math.min(...refChannelStats(xs).variance.map((v) => Math.sqrt(v + 1e-5))) : Infinity;
  const gradTol = { atol: F16.atol * Math.max(1, 0.05 / minStd), rtol: F16.rtol };

  const rm = tensor(device, runningMean, [C]);
  const rv = tensor(device, runningVar, [C]);
  const restore = setPolicy(device, { batchnorm: { cpuLayouts }, fusion: { reluMask: c.reluMask } });
  try {
    await checkOp(device, {
      inputs,
      // affine off: γ = 1, β = 0 are the reference's inputs but not the op's
      grad: [true, c.affine, c.affine, true],
      gpu: ([tx, tg, tb, tr]) => {
        const xh = cast(tx!, 'f16');
        const r = c.residual ? (c.halfResidual ? cast(tr!, 'f16') : tr!) : undefined;
        const y = bnOp(c, xh, r, { training, weight: c.affine ? tg : null, bias: c.affine ? tb : null, runningMean: rm, runningVar: rv });
        assert.equal(y.dtype, 'f16', 'the output has the input dtype');
        return cast(y, 'f32');
      },
      ref: refBatchNorm2d(o),
      tol: F16,
      gradTol,
      seed: c.seed,
    });
  } finally {
    restore();
  }
  // PyTorch's update from the batch as stored (f16 values, f32 statistics); eval leaves them alone
  const state = { mean: [...runningMean], variance: [...runningVar], batches: 0 };
  if (training) refRunningUpdate(xs, state, 0.1);
  assertClose(await rm.toArray(), arr([C], state.mean), RUNNING_TOL, 'running_mean');
  assertClose(await rv.toArray(), arr([C], state.variance), RUNNING_TOL, 'running_var');
  rm.dispose();
  rv.dispose();
}

/** Reads tensors back (as f32 values), disposing them. */
async function readAll(ts: Tensor[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) {
    out.push(await t.toArray());
    t.dispose();
  }
  return out;
}

describe('batchNorm2d on f16 activations', () => {
  for (const cpuLayouts of [true, false]) {
    const layouts = cpuLayouts ? 'CPU-rasteriser layouts' : 'GPU layouts';
    it(`training mode, ${layouts}: forward, every gradient and the running statistics match the reference`, async () => {
      await fc.assert(fc.asyncProperty(halfCase, (c) => checkHalf(c, true, cpuLayouts)), { numRuns: 20 });
    });

    it(`eval mode, ${layouts}: forward and every gradient match the reference`, async () => {
      await fc.assert(fc.asyncProperty(halfCase, (c) => checkHalf(c, false, cpuLayouts)), { numRuns: 12 });
    });

    it(`batch 1, small and vec4 planes, several runs of images per channel, ${layouts}`, async () => {
      for (const c of FIXED) {
        await checkHalf(c, true, cpuLayouts);
        await checkHalf({ ...c, reluMask: !c.reluMask, seed: c.seed + 1 }, false, cpuLayouts);
      }
    });
  }

  it('gradients have their tensors’ dtypes: x and the residual theirs (f16 or f32), γ and β f32', async () => {
    const rng = new Rng(5);
    const shape = [2, 3, 3, 5];
    const x = halfArr(randomArr(rng, shape, -2, 3));
    const r = halfArr(randomArr(rng, shape));
    const gamma = randomGamma(rng, 3);
    const beta = randomArr(rng, [3]);
    const dy = halfArr(randomArr(rng, shape));
    for (const [xType, rType, relu] of [
      ['f16', 'f16', true],
      ['f16', 'f32', true],
      ['f16', 'f32', false], // the residual's gradient is dy itself, cast to f32
      ['f32', 'f16', true],
      ['f32', 'f16', false],
    ] as const) {
      const o: RefBatchNormOptions = { training: true, relu, residual: true };
      const inputs = [x, gamma, beta, r];
      if (relu) clearKink(inputs, o);
      const want = refBatchNorm2d(o).forward(inputs);
      const wantGrads = refBatchNorm2d(o).backward(inputs, dy);
      const ts = tidy(() => {
        const tx = tensor(device, inputs[0]!.data, shape, xType).requireGrad();
        const tr = tensor(device, r.data, shape, rType).requireGrad();
        const tg = tensor(device, gamma.data, [3]).requireGrad();
        const tb = tensor(device, beta.data, [3]).requireGrad();
        const y = bnOp({ relu }, tx, tr, { training: true, weight: tg, bias: tb });
        assert.equal(y.dtype, xType, 'the output has the input dtype');
        y.backward(tensor(device, dy.data, shape, y.dtype));
        const what = `x ${xType}, residual ${rType}${relu ? ', relu' : ''}`;
        assert.equal(tx.grad!.dtype, xType, `${what}: dx`);
        assert.equal(tr.grad!.dtype, rType, `${what}: dresidual`);
        assert.equal(tg.grad!.dtype, 'f32', `${what}: dγ`);
        assert.equal(tb.grad!.dtype, 'f32', `${what}: dβ`);
        return [y, tx.grad!, tg.grad!, tb.grad!, tr.grad!, tx, tr, tg, tb];
      });
      const [y, dx, dg, db, dr] = await readAll(ts);
      const what = `x ${xType}, residual ${rType}${relu ? ', relu' : ''}`;
      // an f32 x and a relu-free path have fewer roundings: F16 covers them all
      assertClose(y!, want, F16, `${what}: forward`);
      [dx, dg, db, dr].forEach((got, i) => assertClose(got!, wantGrads[i]!, F16, `${what}: gradient ${['x', 'γ', 'β', 'residual'][i]}`));
    }
  });

  it('the relu masks by the f16 output as stored under either reluMask policy: a positive value that rounds to 0 passes no gradient', async () => {
    // channel 0: γ = 1e-8, so v = γ·ĥ ≤ 1.5e-8 < 2^-25 and y rounds to 0 in f16 where v > 0
    // (a mask recomputed from x, v > 0, would pass these); channel 1: an ordinary γ
    const rng = new Rng(11);
    const shape = [3, 2, 2, 3];
    const xs = halfArr(randomArr(rng, shape, -1, 1));
    const dys = halfArr(randomArr(rng, shape));
    for (const cpuLayouts of [true, false])
      for (const training of [true, false]) {
        const runs: Float32Array[][] = [];
        for (const reluMask of [true, false]) {
          const restore = setPolicy(device, { batchnorm: { cpuLayouts }, fusion: { reluMask } });
          try {
            const ts = tidy(() => {
              const x = tensor(device, xs.data, shape, 'f16').requireGrad();
              const g = tensor(device, [1e-8, 0.5], [2]).requireGrad();
              const b = tensor(device, [0, 0], [2]).requireGrad();
              const y = batchNormRelu(x, { training, weight: g, bias: b, runningMean: tensor(device, [0, 0], [2]), runningVar: tensor(device, [1, 1], [2]) });
              y.backward(tensor(device, dys.data, shape, 'f16'));
              return [y, x.grad!, g.grad!, b.grad!, x, g, b];
            });
            runs.push(await readAll(ts));
          } finally {
            restore();
          }
        }
        const what = `${cpuLayouts ? 'CPU' : 'GPU'} layouts, ${training ? 'training' : 'eval'}`;
        const [y, dx, dg, db] = runs[0]!;
        // the same values (two different kernels may give a zero different signs)
        const unsigned = (a: Float32Array): number[] => Array.from(a, (v) => v + 0);
        for (let i = 0; i < 4; i++) assert.deepEqual(unsigned(runs[0]![i]!), unsigned(runs[1]![i]!), `${what}: output/gradient ${i} differs between the masks`);
        const plane = 6;
        for (let n = 0; n < 3; n++)
          for (let j = 0; j < plane; j++) {
            assert.equal(y![n * 2 * plane + j], 0, `${what}: channel 0 underflows to 0`);
            assert.equal(dx![n * 2 * plane + j], 0, `${what}: channel 0 passes no gradient`);
          }
        assert.equal(dg![0], 0, `${what}: dγ of the underflowed channel`);
        assert.equal(db![0], 0, `${what}: dβ of the underflowed channel`);
        assert.ok(db![1] !== 0 && y!.slice(plane, 2 * plane).some((v) => v > 0), `${what}: channel 1 is live`);
      }
  });

  it('an f16 input takes none of the conv fusions: partials left beside x or dY are ignored, and no backward is requested of a conv', async (t) => {
    // with the fused backward on (production leaves it off on lavapipe), so that not asking means something
    t.after(setPolicy(device, { fusion: { bnBackward: true } }));
    const rng = new Rng(13);
    const shape = [2, 3, 4, 4];
    const xs = halfArr(randomArr(rng, shape, -2, 3));
    const dys = halfArr(randomArr(rng, shape));
    const runs: Float32Array[][] = [];
    for (const plant of [false, true]) {
      const ts = tidy(() => {
        const x = tensor(device, xs.data, shape, 'f16').requireGrad();
        const g = tensor(device, [0.5, -1, 1.5], [3]).requireGrad();
        const b = tensor(device, [0.1, 0.2, -0.3], [3]).requireGrad();
        const dy = tensor(device, dys.data, shape, 'f16');
        // what a row conv's epilogues would have written, as NaN: used, they would show
        if (plant) leaveStatistics(x, { partials: tensor(device, new Array<number>(3 * 3).fill(NaN), [9]), splits: 1 });
        const y = batchNormRelu(x, { training: true, weight: g, bias: b });
        assert.equal(takeStatistics(x), undefined, 'the statistics partials were taken (and released)');
        assert.equal(bnBackwardRequestOf(y), undefined, 'no conv grad input is asked to fold in the backward of an f16 batchnorm');
        if (plant) leavePrepared(dy, { partials: tensor(device, new Array<number>(3 * 2).fill(NaN), [6]), splits: 1 });
        y.backward(dy);
        assert.equal(takePrepared(dy), undefined, 'the prepared partials were taken (and released)');
        return [y, x.grad!, g.grad!, b.grad!, x, g, b, dy];
      });
      runs.push(await readAll(ts));
    }
    for (let i = 0; i < 4; i++) assert.deepEqual([...runs[1]![i]!], [...runs[0]![i]!], `output/gradient ${i}`);
    // an f32 batchnorm does ask (policy.fusion.bnBackward), so the check above is not vacuous
    tidy(() => {
      const y = batchNormRelu(tensor(device, xs.data, shape).requireGrad(), { training: true });
      assert.ok(bnBackwardRequestOf(y), 'an f32 training batchnorm requests the fused backward');
    });
  });

  it('refuses f16 parameters or running statistics, and an i32 input', () => {
    tidy(() => {
      const x = tensor(device, new Array<number>(2 * 3 * 4).fill(1), [2, 3, 2, 2], 'f16');
      const c = (dtype: 'f32' | 'f16'): Tensor => tensor(device, [1, 1, 1], [3], dtype);
      assert.throws(() => batchNorm2d(x, { training: true, weight: c('f16'), bias: c('f32') }), /batchNorm2d: weight must be f32, got f16/);
      assert.throws(() => batchNormRelu(x, { training: false, runningMean: c('f32'), runningVar: c('f16') }), /batchNormRelu: runningVar must be f32, got f16/);
      assert.throws(() => batchNorm2d(tensor(device, new Array<number>(24).fill(1), [2, 3, 2, 2], 'i32'), { training: true }), /input must be f32 or f16, got i32/);
    });
  });
});
