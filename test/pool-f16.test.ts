// Pooling and the option-A shortcut on f16 tensors (half-precision training: f16
// storage, f32 arithmetic) against the float64 references, forward and gradients,
// on odd shapes and on the vec4/quad paths; and the f32-only ops (matmul, linear,
// softmax cross-entropy, argmax, accuracy) on f16 operands: cast to f32 first, f32
// results, f16 gradients. Inputs are rounded to f16 before the reference sees them,
// so the reference and the kernel pool the same values (a max pool's routing then
// agrees, ties included) and the error left is the f16 rounding of outputs and of
// the upstream gradient: a few ulps of 2^-11 relative.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type Device, Rng, type Tensor, accuracy, argmax, avgPool2d, cast, globalAvgPool2d, linear, matmul, maxPool2d,
  softmaxCrossEntropy, subsamplePadChannels, tensor, trace,
} from '../engine/index.ts';
import { DEFAULT_TOL, F16_TOL, type Tolerance, assertClose, checkOp, destroyTestDevice, half, halfArr, randomArr, testDevice } from './helpers.ts';
import { type Arr, type RefOp, arr, refLinear, refMatmul, refSoftmaxCrossEntropy } from './reference.ts';
import { refAvgPool2d, refGlobalAvgPool, refMaxPool2d, refSubsamplePadChannels } from './reference-conv.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

// outputs and gradients each rounded to f16 once (as test/f16-storage.test.ts)
const F16 = F16_TOL;
// one f16 rounding of a value computed in f32 from f16-exact inputs: half an ulp, 2^-12 relative
const ONE_ROUNDING: Tolerance = { atol: 1e-5, rtol: 2e-3 };

const randomHalf = (rng: Rng, shape: number[]): Arr => halfArr(randomArr(rng, shape));


const poolCase = fc
  .record({
    batch: fc.constantFrom(1, 1, 2, 3),
    channels: fc.constantFrom(1, 3, 5, 6, 17),
    h: fc.integer({ min: 1, max: 21 }),
    w: fc.integer({ min: 1, max: 21 }),
    k: fc.constantFrom(1, 2, 3),
    stride: fc.constantFrom(1, 2, 3),
    padding: fc.constantFrom(0, 1),
    countIncludePad: fc.boolean(),
    seed: fc.nat(),
  })
  .filter((c) => 2 * c.padding <= c.k && c.k <= c.h + 2 * c.padding && c.k <= c.w + 2 * c.padding);

const shapeOf = (c: { batch: number; channels: number; h: number; w: number }): number[] => [c.batch, c.channels, c.h, c.w];

describe('pooling on f16 tensors', () => {
  it('max pool matches the reference (values and argmax routing)', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, async (c) => {
        const x = randomHalf(new Rng(c.seed), shapeOf(c));
        const o = { stride: c.stride, padding: c.padding };
        await checkOp(device, { inputs: [x], gpu: half(([t]) => maxPool2d(t!, c.k, o)), ref: refMaxPool2d(c.k, c.stride, c.padding), tol: F16, seed: c.seed });
      }),
      { numRuns: 10 },
    );
    // batch 1, odd sizes, overlapping windows (several windows route to one pixel)
    const x = randomHalf(new Rng(5), [1, 3, 7, 9]);
    await checkOp(device, { inputs: [x], gpu: half(([t]) => maxPool2d(t!, 3, { stride: 1, padding: 1 })), ref: refMaxPool2d(3, 1, 1), tol: F16 });
  });

  it('max pool on f16 sends a tie to the first maximum, as PyTorch', async () => {
    // 1 + 2^-12 is 1 in f16 and 2 + 2^-11 is 2: each window's maximum ties after rounding
    const x = arr([1, 1, 2, 4], [1, 1 + 2 ** -12, 2, 2 + 2 ** -11, 1, 1, 0.5, 2]);
    await checkOp(device, { inputs: [halfArr(x)], gpu: half(([t]) => maxPool2d(t!, 2)), ref: refMaxPool2d(2), tol: F16 });
  });

  it('avg pool matches the reference (with and without counting the padding)', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, async (c) => {
        const x = randomHalf(new Rng(c.seed), shapeOf(c));
        const o = { stride: c.stride, padding: c.padding, countIncludePad: c.countIncludePad };
        await checkOp(device, {
          inputs: [x],
          gpu: half(([t]) => avgPool2d(t!, c.k, o)),
          ref: refAvgPool2d(c.k, c.stride, c.padding, c.countIncludePad),
          tol: F16,
          seed: c.seed,
        });
      }),
      { numRuns: 10 },
    );
  });

  it('global average pool matches the reference, scalar and vec4 planes', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, async (c) => {
        const x = randomHalf(new Rng(c.seed), shapeOf(c));
        await checkOp(device, { inputs: [x], gpu: half(([t]) => globalAvgPool2d(t!)), ref: refGlobalAvgPool, tol: F16, seed: c.seed });
      }),
      { numRuns: 8 },
    );
    // vec4 planes (8×8 as the ResNet head, one vec4, 4×3), odd planes, batch 1, a plane larger than a workgroup
    for (const shape of [[3, 70, 8, 8], [1, 5, 2, 2], [2, 3, 4, 3], [1, 7, 3, 5], [1, 6, 17, 19]]) {
      await checkOp(device, { inputs: [randomHalf(new Rng(shape[3]!), shape)], gpu: half(([t]) => globalAvgPool2d(t!)), ref: refGlobalAvgPool, tol: F16 });
    }
  });

  it('option-A shortcut by quads (widths a multiple of 4, strides 1, 2, 4) matches the reference', async () => {
    // [batch, channels, h, w], out channels, stride, channels before: quads both ways, or only backward (output width 6)
    for (const [shape, out, stride, before] of [
      [[2, 3, 8, 16], 8, 2, 2],
      [[1, 5, 7, 12], 9, 2, 1],
      [[1, 3, 4, 8], 5, 1, 0],
      [[2, 3, 9, 16], 6, 4, 3],
    ] as const) {
      const x = randomHalf(new Rng(shape[3] * 7 + stride), [...shape]);
      await checkOp(device, { inputs: [x], gpu: half(([t]) => subsamplePadChannels(t!, out, stride, before)), ref: refSubsamplePadChannels(out, stride, before), tol: F16 });
    }
  });

  it('option-A shortcut (subsample, zero channels) matches the reference on odd shapes', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, fc.nat(4), fc.nat(4), async (c, before, afterPad) => {
        const x = randomHalf(new Rng(c.seed), shapeOf(c));
        const out = c.channels + before + afterPad;
        await checkOp(device, {
          inputs: [x],
          gpu: half(([t]) => subsamplePadChannels(t!, out, c.stride, before)),
          ref: refSubsamplePadChannels(out, c.stride, before),
          tol: F16,
          seed: c.seed,
        });
      }),
      { numRuns: 8 },
    );
  });

  it('f16 leaves get f16 outputs and f16 gradients, from an f16 or an f32 upstream gradient', async () => {
    const ops: [string, (x: Tensor) => Tensor, RefOp][] = [
      ['maxPool2d', (x) => maxPool2d(x, 3, { stride: 2, padding: 1 }), refMaxPool2d(3, 2, 1)],
      ['avgPool2d', (x) => avgPool2d(x, 3, { stride: 2, padding: 1, countIncludePad: false }), refAvgPool2d(3, 2, 1, false)],
      ['globalAvgPool2d', (x) => globalAvgPool2d(x), refGlobalAvgPool],
      ['subsamplePadChannels', (x) => subsamplePadChannels(x, 9, 2, 3), refSubsamplePadChannels(9, 2, 3)],
    ];
    // odd everything; whole vec4 planes and quads (width 8, output width 4)
    for (const shape of [[1, 5, 7, 9], [2, 3, 8, 8]]) {
      for (const [name, op, ref] of ops) {
        for (const gradDType of ['f16', 'f32'] as const) {
          const rng = new Rng(shape[3]! * 31 + name.length);
          const xa = randomHalf(rng, shape);
          const want = ref.forward([xa]);
          const ga = randomHalf(rng, want.shape); // f16-exact, so either upstream dtype carries the same values
          const x = tensor(device, xa.data, xa.shape, 'f16').requireGrad();
          const y = op(x);
          const g = tensor(device, ga.data, ga.shape, gradDType);
          const what = `${name} ${JSON.stringify(shape)} (${gradDType} upstream gradient)`;
          try {
            assert.equal(y.dtype, 'f16', `${what}: output dtype`);
            y.backward(g);
            assert.equal(x.grad?.dtype, 'f16', `${what}: gradient dtype`);
            assertClose(await y.toArray(), want, F16, `${what} forward`);
            assertClose(await x.grad!.toArray(), ref.backward([xa], ga)[0]!, F16, `${what} gradient`);
          } finally {
            for (const t of [x.grad, x, y, g]) t?.dispose();
          }
        }
      }
    }
  });
});

describe('f32-only ops on f16 operands', () => {
  it('linear + softmax cross-entropy on f16 features: f32 logits and loss, an f16 feature gradient close to the reference', async () => {
    const rng = new Rng(11);
    const [N, K, M] = [5, 19, 10];
    const xa = randomHalf(rng, [N, K]);
    const wa = randomArr(rng, [M, K], -0.5, 0.5);
    const ba = randomArr(rng, [M]);
    const la = arr([N], [3, 0, 9, 3, 7]);
    const x = tensor(device, xa.data, xa.shape, 'f16').requireGrad();
    const w = tensor(device, wa.data, wa.shape).requireGrad();
    const b = tensor(device, ba.data, ba.shape).requireGrad();
    const labels = tensor(device, la.data, la.shape, 'i32');
    const logits = linear(x, w, b);
    const loss = softmaxCrossEntropy(logits, labels);
    try {
      assert.equal(logits.dtype, 'f32');
      assert.equal(loss.dtype, 'f32');
      loss.backward();
      assert.equal(x.grad?.dtype, 'f16');
      assert.equal(w.grad?.dtype, 'f32');
      assert.equal(b.grad?.dtype, 'f32');
      const z = refLinear.forward([xa, wa, ba]);
      const ce = refSoftmaxCrossEntropy();
      const [gz] = ce.backward([z, la], arr([], [1]));
      const [gx, gw, gb] = refLinear.backward([xa, wa, ba], gz!);
      // f16-exact features: the f32 paths are as precise as on f32 features
      assertClose(await logits.toArray(), z, DEFAULT_TOL, 'logits');
      assertClose(await loss.toArray(), ce.forward([z, la]), DEFAULT_TOL, 'loss');
      assertClose(await w.grad!.toArray(), gw!, DEFAULT_TOL, 'weight gradient');
      assertClose(await b.grad!.toArray(), gb!, DEFAULT_TOL, 'bias gradient');
      // the feature gradient is computed in f32 and rounded once to f16
      assertClose(await x.grad!.toArray(), gx!, ONE_ROUNDING, 'feature gradient');
    } finally {
      for (const t of [x, w, b, labels, logits, loss, x.grad, w.grad, b.grad]) t?.dispose();
    }
  });

  it('a ResNet head on f16 activations (global avg pool → linear → loss) matches the reference', async () => {
    const [N, C, H, W, M] = [3, 6, 8, 8, 10];
    const rng = new Rng(4);
    const la = arr([N], [1, 8, 4]);
    const head: RefOp = {
      name: 'globalAvgPool → linear → softmaxCrossEntropy',
      forward: ([x, w, b]) => {
        const p = refGlobalAvgPool.forward([x!]);
        return refSoftmaxCrossEntropy().forward([refLinear.forward([arr([N, C], p.data), w!, b!]), la]);
      },
      backward: ([x, w, b], g) => {
        const p = arr([N, C], refGlobalAvgPool.forward([x!]).data);
        const [gz] = refSoftmaxCrossEntropy().backward([refLinear.forward([p, w!, b!]), la], g);
        const [gp, gw, gb] = refLinear.backward([p, w!, b!], gz!);
        const [gx] = refGlobalAvgPool.backward([x!], arr([N, C, 1, 1], gp!.data));
        return [gx!, gw!, gb!];
      },
    };
    await checkOp(device, {
      inputs: [randomHalf(rng, [N, C, H, W]), randomArr(rng, [M, C], -0.5, 0.5), randomArr(rng, [M])],
      gpu: ([x, w, b]) => {
        const pooled = globalAvgPool2d(cast(x!, 'f16')).reshape([N, C]);
        assert.equal(pooled.dtype, 'f16');
        const logits = linear(pooled, w!, b!);
        assert.equal(logits.dtype, 'f32');
        return softmaxCrossEntropy(logits, tensor(device, la.data, la.shape, 'i32'));
      },
      ref: head,
      tol: F16,
    });
  });

  it('matmul with an f16 operand is f32 and gives that operand an f16 gradient', async () => {
    const rng = new Rng(2);
    await checkOp(device, {
      inputs: [randomHalf(rng, [7, 5]), randomArr(rng, [5, 3])],
      gpu: ([a, b]) => {
        const y = matmul(cast(a!, 'f16'), b!);
        assert.equal(y.dtype, 'f32');
        return y;
      },
      ref: refMatmul(),
      gradTol: F16,
    });
    const a = tensor(device, [1, 2, 3, 4, 5, 6], [2, 3], 'f16').requireGrad();
    const b = tensor(device, [1, 0, 0, 1, 1, 1], [3, 2]);
    const y = matmul(a, b, {});
    y.backward(tensor(device, [1, 1, 1, 1], [2, 2]));
    assert.equal(a.grad?.dtype, 'f16');
    assert.deepEqual([...(await y.toArray())], [4, 5, 10, 11]);
    assert.deepEqual([...(await a.grad!.toArray())], [1, 1, 2, 1, 1, 2]);
  });

  it('argmax and accuracy read f16 logits', async () => {
    const la = [2, 0, 1, 0];
    const logits = tensor(device, [0.1, -2, 3, 5, 4.5, -1, 0, 0.25, 0.125, 1, 2, -3], [4, 3], 'f16');
    const labels = tensor(device, la, [4], 'i32');
    assert.deepEqual([...(await argmax(logits).toInt32Array())], [2, 0, 1, 1]);
    assert.deepEqual([...(await accuracy(logits, labels).toArray())], [0.75]);
  });

  it('f32 operands take no cast; f16 ones one cast each', () => {
    const x32 = tensor(device, [1, 2, 3, 4], [2, 2]);
    const w = tensor(device, [1, 0, 0, 1], [2, 2]);
    const labels = tensor(device, [0, 1], [2], 'i32');
    const ops32 = trace(() => softmaxCrossEntropy(linear(x32, w), labels)).ops.map((o) => o.op);
    assert.deepEqual(ops32, ['linear', 'softmaxCrossEntropy']);
    const ops16 = trace(() => softmaxCrossEntropy(linear(cast(x32, 'f16'), w), labels)).ops.map((o) => o.op);
    assert.deepEqual(ops16, ['cast', 'cast', 'linear', 'softmaxCrossEntropy']);
  });
});
