// Every issue-2 op against the float64 reference on fast-check-generated shapes
// (odd sizes, batch 1, sizes that are not multiples of the 64×64 matmul tile),
// forward and every input's gradient; the reference's backward by finite differences.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Rng, accuracy, add, argmax, linear, tensor, matmul, mean, mul, relu, scale, softmaxCrossEntropy, sub, sum, type Device } from '../engine/index.ts';
import { checkOp, checkRefGrad, destroyTestDevice, randomArr, testDevice } from './helpers.ts';
import {
  arr, refAdd, refLinear, refMatmul, refMul, refReduce, refRelu, refScale, refSoftmaxCrossEntropy, refSub,
} from './reference.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const RUNS = { numRuns: 12 };
const dim = (max: number) => fc.integer({ min: 1, max });

describe('matmul', () => {
  it('matches the reference for random shapes, transposes and batches', async () => {
    await fc.assert(
      fc.asyncProperty(dim(70), dim(70), dim(70), fc.boolean(), fc.boolean(), fc.constantFrom(0, 1, 3), fc.constantFrom(0, 1, 3), fc.nat(),
        async (M, N, K, transA, transB, ba, bb, seed) => {
          if (ba > 1 && bb > 1) bb = ba; // batches must agree unless one broadcasts
          const rng = new Rng(seed);
          const aShape = transA ? [K, M] : [M, K];
          const bShape = transB ? [N, K] : [K, N];
          const a = randomArr(rng, ba ? [ba, ...aShape] : aShape);
          const b = randomArr(rng, bb ? [bb, ...bShape] : bShape);
          await checkOp(device, {
            inputs: [a, b],
            gpu: ([x, y]) => matmul(x!, y!, { transA, transB }),
            ref: refMatmul(transA, transB),
            seed,
          });
        }),
      RUNS,
    );
  });

  it('reference backward agrees with finite differences', () => {
    const rng = new Rng(5);
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const [M, K, N] = [2, 4, 3];
      const aShape = ta ? [K, M] : [M, K];
      const bShape = tb ? [N, K] : [K, N];
      checkRefGrad(refMatmul(ta, tb), [randomArr(rng, [2, ...aShape]), randomArr(rng, bShape)], { seed: 1 });
      checkRefGrad(refMatmul(ta, tb), [randomArr(rng, aShape), randomArr(rng, [2, ...bShape])], { seed: 2 });
    }
  });

  it('linear (fused bias) matches PyTorch semantics', async () => {
    await fc.assert(
      fc.asyncProperty(dim(40), dim(70), dim(40), fc.boolean(), fc.nat(), async (N, IN, OUT, withBias, seed) => {
        const rng = new Rng(seed);
        const inputs = [randomArr(rng, [N, IN]), randomArr(rng, [OUT, IN])];
        if (withBias) inputs.push(randomArr(rng, [OUT]));
        await checkOp(device, {
          inputs,
          gpu: ([x, w, b]) => linear(x!, w!, b),
          ref: refLinear,
          seed,
        });
      }),
      RUNS,
    );
    checkRefGrad(refLinear, [randomArr(new Rng(1), [3, 4]), randomArr(new Rng(2), [2, 4]), randomArr(new Rng(3), [2])]);
  });
});

// shapes of a pair that broadcast: b is a with some dimensions set to 1 and some leading ones dropped
const broadcastPair = fc
  .tuple(fc.array(dim(9), { minLength: 1, maxLength: 4 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), fc.nat(3))
  .map(([a, ones, drop]) => {
    const b = a.map((d, i) => (ones[i] ? 1 : d)).slice(Math.min(drop, a.length - 1));
    return [a, b] as const;
  });

describe('elementwise', () => {
  for (const [name, fn, ref] of [
    ['add', add, refAdd],
    ['sub', sub, refSub],
    ['mul', mul, refMul],
  ] as const) {
    it(`${name} with broadcasting (bias, residual, either side)`, async () => {
      await fc.assert(
        fc.asyncProperty(broadcastPair, fc.boolean(), fc.nat(), async ([sa, sb], swap, seed) => {
          const rng = new Rng(seed);
          const a = randomArr(rng, [...sa]);
          const b = randomArr(rng, [...sb]);
          const inputs = swap ? [b, a] : [a, b];
          await checkOp(device, { inputs, gpu: ([x, y]) => fn(x!, y!), ref, seed });
        }),
        RUNS,
      );
      const rng = new Rng(3);
      checkRefGrad(ref, [randomArr(rng, [2, 3, 4]), randomArr(rng, [3, 1])]);
    });
  }

  it('relu and scale', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(dim(40), { minLength: 1, maxLength: 3 }), fc.double({ min: -3, max: 3, noNaN: true }), fc.nat(),
        async (shape, s, seed) => {
          const x = randomArr(new Rng(seed), shape);
          await checkOp(device, { inputs: [x], gpu: ([t]) => relu(t!), ref: refRelu, seed });
          await checkOp(device, { inputs: [x], gpu: ([t]) => scale(t!, s), ref: refScale(s), seed });
        }),
      RUNS,
    );
    // a NaN stays NaN, as in PyTorch (max(NaN, 0) is 0 on lavapipe), on the vec4 and scalar paths
    for (const n of [8, 5]) {
      const v = Array.from({ length: n }, (_, i) => i - 3);
      v[1] = NaN;
      const x = tensor(device, v, [n]);
      const y = relu(x);
      const out = await y.toArray();
      [x, y].forEach((t) => t.dispose());
      assert.deepEqual([...out].map((x) => (Number.isNaN(x) ? 'NaN' : x)), v.map((x) => (Number.isNaN(x) ? 'NaN' : Math.max(x, 0))));
    }
    // away from the kink, where the derivative is defined
    checkRefGrad(refRelu, [arr([4], [-1.5, -0.2, 0.3, 2])]);
    checkRefGrad(refScale(-2.5), [randomArr(new Rng(1), [5])]);
  });

  it('a large 1-D grid folds into y and still covers every element', async () => {
    const n = 65535 * 256 + 777;
    const x = randomArr(new Rng(8), [n]);
    await checkOp(device, { inputs: [x], gpu: ([t]) => scale(t!, 2), ref: refScale(2) });
  });
});

describe('reductions', () => {
  it('sum and mean over all or some axes, with and without keepDims', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(dim(12), { minLength: 1, maxLength: 4 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        fc.boolean(), fc.boolean(), fc.nat(), async (shape, pick, isMean, keepDims, seed) => {
          const axes = shape.map((_, i) => i).filter((i) => pick[i]);
          const useAll = axes.length === 0;
          const x = randomArr(new Rng(seed), shape);
          const ref = refReduce(isMean ? 'mean' : 'sum', useAll ? undefined : axes, keepDims);
          const fn = isMean ? mean : sum;
          await checkOp(device, { inputs: [x], gpu: ([t]) => fn(t!, useAll ? undefined : axes, keepDims), ref, seed });
        }),
      RUNS,
    );
    checkRefGrad(refReduce('mean', [1]), [randomArr(new Rng(2), [2, 3, 2])]);
  });

  it('a sum of a million elements stays accurate (tree reduction)', async () => {
    const x = randomArr(new Rng(4), [1000, 1000], 0, 1);
    await checkOp(device, { inputs: [x], gpu: ([t]) => sum(t!), ref: refReduce('sum', undefined), tol: { atol: 1e-6, rtol: 1e-5 } });
  });
});

describe('softmax cross-entropy', () => {
  it('matches the reference with and without label smoothing', async () => {
    await fc.assert(
      fc.asyncProperty(dim(300), dim(40), fc.constantFrom(0, 0.1, 0.5), fc.double({ min: 0.1, max: 30, noNaN: true }), fc.nat(),
        async (N, C, eps, spread, seed) => {
          const rng = new Rng(seed);
          const z = randomArr(rng, [N, C], -spread, spread);
          const y = arr([N], Array.from({ length: N }, () => rng.int(C)));
          await checkOp(device, {
            inputs: [z, y],
            int: [false, true],
            grad: [true, false],
            gpu: ([l, t]) => softmaxCrossEntropy(l!, t!, { labelSmoothing: eps }),
            ref: refSoftmaxCrossEntropy(eps),
            seed,
          });
        }),
      RUNS,
    );
    const rng = new Rng(1);
    checkRefGrad(refSoftmaxCrossEntropy(0.1), [randomArr(rng, [3, 4]), arr([3], [0, 3, 1])], { skip: [1] });
  });

  it('is stable for huge logits', async () => {
    const z = arr([2, 3], [1000, 0, -1000, 88, 89, 90]);
    await checkOp(device, {
      inputs: [z, arr([2], [0, 1])],
      int: [false, true],
      grad: [true, false],
      gpu: ([l, t]) => softmaxCrossEntropy(l!, t!),
      ref: refSoftmaxCrossEntropy(0),
    });
  });
});

describe('argmax and accuracy', () => {
  it('match a reference, first index on ties', async () => {
    await fc.assert(
      fc.asyncProperty(dim(300), dim(20), fc.nat(), async (N, C, seed) => {
        const rng = new Rng(seed);
        // few distinct values, so ties happen
        const z = Float32Array.from({ length: N * C }, () => rng.int(4));
        const y = Int32Array.from({ length: N }, () => rng.int(C));
        const want = Array.from({ length: N }, (_, n) => {
          let best = 0;
          for (let c = 1; c < C; c++) if (z[n * C + c]! > z[n * C + best]!) best = c;
          return best;
        });
        const zt = tensor(device, z, [N, C]);
        const yt = tensor(device, y, [N], 'i32');
        const am = argmax(zt);
        const acc = accuracy(zt, yt);
        assert.deepEqual([...(await am.toInt32Array())], want);
        const hits = want.filter((w, n) => w === y[n]).length;
        assert.ok(Math.abs((await acc.item()) - hits / N) < 1e-6);
        for (const t of [zt, yt, am, acc]) t.dispose();
      }),
      RUNS,
    );
  });
});

describe('elementwise kernels: vec4 (size a multiple of 4) and scalar paths', () => {
  it('relu, scale, add, sub, mul and their backwards (reluGrad, accumulation) on sizes 4k and 4k ± 1', async () => {
    const rng = new Rng(77);
    for (const shape of [[3, 4], [5, 8], [3, 5], [1, 7], [2, 2, 3]]) {
      await checkOp(device, { inputs: [randomArr(rng, shape)], gpu: ([x]) => relu(x!), ref: refRelu });
      await checkOp(device, { inputs: [randomArr(rng, shape)], gpu: ([x]) => scale(x!, -1.5), ref: refScale(-1.5) });
      for (const [op, ref] of [[add, refAdd], [sub, refSub], [mul, refMul]] as const) {
        await checkOp(device, { inputs: [randomArr(rng, shape), randomArr(rng, shape)], gpu: ([a, b]) => op(a!, b!), ref });
      }
    }
  });
});
