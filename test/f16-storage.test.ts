// Half-precision storage (f16 activations and gradients, f32 arithmetic): the host's
// f16 encoding against IEEE binary16 rounding, f16 tensors' upload and readback, and
// the elementwise and reduction ops on f16 tensors against the float64 references,
// forward and gradients, with f16 tolerances (each stored value carries up to 2^-11
// relative rounding). Casts are differentiable; gradients keep their tensor's dtype.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type Device, Rng, type Tensor, add, cast, conv2d, convGeometry, full, mean, mul, relu, scale, sub, sum, tensor, zeros } from '../engine/index.ts';
import { decodeHalves, encodeHalves, fromHalfBits, toHalfBits } from '../kernels/cast.ts';
import { F16_TOL, type Tolerance, checkOp, destroyTestDevice, half, halfArr, randomArr, setPolicy, testDevice, toHalf } from './helpers.ts';
import { refAdd, refMul, refReduce, refRelu, refScale, refSub } from './reference.ts';
import { refConv2d } from './reference-conv.ts';
import { planConv } from '../kernels/convPlan.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const F16 = F16_TOL;
const dims = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 });

describe('f16 storage', () => {
  it('the host encoding rounds like IEEE binary16 (ties to even, subnormals, overflow) and decodes exactly', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, min: -1e6, max: 1e6 }), (x) => {
        const f = Math.fround(x);
        const want = toHalf(f);
        const got = fromHalfBits(toHalfBits(f));
        assert.ok(Object.is(got, want) || (got === 0 && want === 0), `${f}: ${got} vs ${want}`);
      }),
      { numRuns: 2000 },
    );
    for (const v of [2 ** -24, 2 ** -25, 1.5 * 2 ** -25, 65504, 65519, 65520, -65520, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -14 * (1 - 2 ** -11)]) {
      assert.equal(fromHalfBits(toHalfBits(v)), toHalf(v), String(v));
    }
    assert.ok(Number.isNaN(fromHalfBits(toHalfBits(NaN))));
    for (let h = 0; h < 0x10000; h++) {
      const v = fromHalfBits(h);
      if (!Number.isNaN(v)) assert.equal(toHalfBits(v), h, `bits ${h.toString(16)}`);
    }
    assert.deepEqual([...decodeHalves(encodeHalves([1, -2, 0.5]).buffer as ArrayBuffer, 3)], [1, -2, 0.5]);
  });

  it('f16 tensors upload, read back and fill, odd lengths included', async () => {
    const vals = [0.1, -3, 1000.5, 2 ** -20, 7];
    const t = tensor(device, vals, [5], 'f16');
    assert.deepEqual([...(await t.toArray())], vals.map(toHalf));
    const z = zeros(device, [3, 3], 'f16');
    assert.equal(z.dtype, 'f16');
    assert.deepEqual([...(await z.toArray())], Array(9).fill(0));
    const o = full(device, [2, 4], 0.1, 'f16'); // the vec4 fill
    assert.deepEqual([...(await o.toArray())], Array(8).fill(toHalf(Math.fround(0.1))));
    o.dispose();
    const back = cast(t, 'f32');
    assert.equal(back.dtype, 'f32');
    assert.deepEqual([...(await back.toArray())], vals.map(toHalf));
    for (const x of [t, z, back]) x.dispose();
  });

  it('casts on the GPU round as IEEE binary16 and carry their gradient back', async () => {
    const rng = new Rng(3);
    const vals = Array.from({ length: 37 }, () => (rng.uniform() - 0.5) * 10 ** Math.floor(rng.uniform() * 9 - 5));
    vals.push(65519, 65520, -1e6);
    const t = tensor(device, vals).requireGrad();
    const h = cast(t, 'f16');
    assert.deepEqual([...(await h.toArray())], vals.map((v) => toHalf(Math.fround(v))));
    const g = tensor(device, vals.map((_, i) => i / 8), [vals.length], 'f16');
    h.backward(g);
    assert.equal(t.grad!.dtype, 'f32');
    assert.deepEqual([...(await t.grad!.toArray())], vals.map((_, i) => toHalf(i / 8)));
    for (const x of [t, t.grad!, g]) x.dispose();
  });

  for (const [name, ref, op] of [
    ['add', refAdd, add], ['sub', refSub, sub], ['mul', refMul, mul],
  ] as const) {
    it(`${name} on f16 tensors (with broadcasting) matches the reference`, async () => {
      await fc.assert(
        fc.asyncProperty(dims, fc.nat(), fc.boolean(), async (shape, seed, bcast) => {
          const rng = new Rng(seed);
          const bShape = bcast ? shape.map((d, i) => (i % 2 ? 1 : d)) : shape;
          await checkOp(device, { inputs: [randomArr(rng, shape), randomArr(rng, bShape)], gpu: half(([a, b]) => op(a!, b!)), ref, tol: F16, seed });
        }),
        { numRuns: 10 },
      );
    });
  }

  it('relu, scale, sum and mean on f16 tensors match the reference', async () => {
    await fc.assert(
      fc.asyncProperty(dims, fc.nat(), async (shape, seed) => {
        const rng = new Rng(seed);
        // values f16 holds exactly: the reference then sums what the kernels sum; with unrounded inputs their f16
        // rounding (up to 2^-12 each) adds up over a reduction's n terms while the sum itself may be near 0, where the
        // tolerance's relative term cannot cover it (162 terms summing to 0.077 missed by 3e-3)
        const x = halfArr(randomArr(rng, shape));
        await checkOp(device, { inputs: [x], gpu: half(([a]) => relu(a!)), ref: refRelu, tol: F16, seed });
        await checkOp(device, { inputs: [x], gpu: half(([a]) => scale(a!, -1.5)), ref: refScale(-1.5), tol: F16, seed });
        await checkOp(device, { inputs: [x], gpu: half(([a]) => mean(a!, 0, true)), ref: refReduce('mean', [0], true), tol: F16, seed });
        await checkOp(device, { inputs: [x], gpu: half(([a]) => sum(a!)), ref: refReduce('sum', undefined), tol: F16, seed });
      }),
      { numRuns: 8 },
    );
  });

  it('a mixed f16 + f32 op promotes to f32 and gives each input a gradient of its own dtype', async () => {
    const a = tensor(device, [1, 2, 3], [3], 'f16').requireGrad();
    const b = tensor(device, [0.5, 0.25, 0.125]).requireGrad();
    const y = mul(a, b);
    assert.equal(y.dtype, 'f32');
    y.backward(tensor(device, [1, 1, 1]));
    assert.equal(a.grad!.dtype, 'f16');
    assert.equal(b.grad!.dtype, 'f32');
    assert.deepEqual([...(await a.grad!.toArray())], [0.5, 0.25, 0.125]);
    assert.deepEqual([...(await b.grad!.toArray())], [1, 2, 3]);
  });

  // f16 operands over K = Cin·KH·KW terms: like the f16 GEMM tests' unrounded-input tolerance
  const F16_CONV: Tolerance = { atol: 4e-3, rtol: 2e-2 };
  for (const [name, path] of [['the large-tile kernels read and write f16 (native)', 'large'], ["the adapter's own plan on f32 copies (software adapters)", 'auto']] as const) {
    it(`conv2d on an f16 activation, ${name}: f16 output and input gradient, f32 weight and bias gradients, against the reference`, async () => {
      const restore = setPolicy(device, { conv: { path } });
      try {
        // which path runs: every part on the large tiles, or none (lavapipe's own kernels)
        const plan = planConv(device, convGeometry('test', [2, 3, 9, 7], [16, 3, 3, 3], { padding: 1 }), true);
        assert.deepEqual([plan.forward, plan.gradInput, plan.gradWeight].map((k) => k === 'large'), Array(3).fill(path === 'large'));
        const rng = new Rng(path === 'large' ? 41 : 42);
        for (const [n, cin, cout, h, w, k, stride, padding] of [
          [2, 3, 16, 9, 7, 3, 1, 1],
          [1, 5, 7, 8, 8, 3, 2, 1],
          [3, 16, 8, 5, 6, 1, 1, 0],
          [2, 8, 12, 6, 5, 1, 2, 0],
        ] as const) {
          await checkOp(device, {
            inputs: [randomArr(rng, [n, cin, h, w]), randomArr(rng, [cout, cin, k, k]), randomArr(rng, [cout])],
            gpu: ([x, wt, b]) => {
              const y = conv2d(cast(x!, 'f16'), wt!, b, { stride, padding });
              assert.equal(y.dtype, 'f16');
              return cast(y, 'f32');
            },
            ref: refConv2d(stride, padding),
            tol: F16_CONV,
          });
        }
        // gradients keep their tensors' dtypes
        const x = cast(tensor(device, randomArr(rng, [2, 4, 6, 6]).data, [2, 4, 6, 6]), 'f16').requireGrad();
        const wt = tensor(device, randomArr(rng, [8, 4, 3, 3]).data, [8, 4, 3, 3]).requireGrad();
        const y = conv2d(x, wt, null, { padding: 1 });
        y.backward(zeros(device, y.shape, 'f16'));
        assert.equal(x.grad!.dtype, 'f16');
        assert.equal(wt.grad!.dtype, 'f32');
        for (const t of [x, wt, y, x.grad!, wt.grad!]) t.dispose();
      } finally {
        restore();
      }
    });
  }
});
