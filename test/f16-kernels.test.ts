// The f16-operand kernels (shader-f16; lavapipe exposes it): the f32 ↔ f16 casts
// (kernels/cast.ts) against JavaScript's round-to-nearest-even, and the large-tile
// matmul and conv GEMMs with f16 operands and f32 accumulation (kernels/matmulLarge.ts,
// conv2dLarge.ts) against the float64 references. Two checks each: on the inputs
// rounded to f16 the only error left is the f32 accumulation's (tight tolerance);
// against the unrounded inputs, f16 tolerances (inputs carry 2^-11 relative error).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Device, type Tensor, Rng, conv2d, createDevice, empty, matmul, tensor } from '../engine/index.ts';
import { castToF16, castToF32 } from '../kernels/cast.ts';
import { convGemms, conv2dForwardLarge, conv2dGradInputLarge, conv2dGradWeightLarge } from '../kernels/conv2dLarge.ts';
import { gradWeightSplits } from '../kernels/conv2d.ts';
import { type GemmOperand, TILE_128, TILE_128_DB, TILE_64x128 } from '../kernels/gemmLarge.ts';
import { matmulLarge } from '../kernels/matmulLarge.ts';
import { matmulSubgroupMatrix, subgroupMatrixProblem } from '../kernels/matmulSubgroupMatrix.ts';
import { type Tolerance, assertClose, checkOp, halfArr, randomArr, setPolicy, toHalf } from './helpers.ts';
import { type Arr, refMatmul } from './reference.ts';
import { refConv2d } from './reference-conv.ts';

let device: Device;
// NVIDIA's Vulkan driver exposes shader-f16 through Dawn only with vulkan_enable_f16_on_nvidia
// (BENCHMARKS.md, "On a GPU"); subgroup matrices only with allow_unsafe_apis
before(async () => {
  device = await createDevice({ dawnFlags: ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] });
});
after(() => device.close());


const F16_ACC: Tolerance = { atol: 1e-5, rtol: 1e-4 }; // rounded inputs: f32 accumulation only
const F16_IN: Tolerance = { atol: 4e-3, rtol: 2e-2 }; // unrounded inputs: f16 operands

/** An f16 copy of an f32 tensor, made on the GPU. */
function f16Of(t: Tensor): GemmOperand & { dispose(): void } {
  const pairs = empty(device, [Math.ceil(t.size / 2)]);
  castToF16(device, t, pairs.buffer);
  return { buffer: pairs.buffer, size: t.size, dispose: () => pairs.dispose() };
}

const upload = (a: Arr): Tensor => tensor(device, Float32Array.from(a.data), a.shape);

describe('f16 kernels', { skip: false }, () => {
  it('casts round to nearest even like IEEE binary16, odd lengths, overflow to inf, and back exactly', async (t) => {
    if (!device.hasShaderF16) return t.skip('no shader-f16 on this adapter');
    const vals = [0, -0, 1, -1, 1 / 3, 65504, 65519, 65520, 1e6, -1e6, 2 ** -24, 2 ** -25 * 1.5, 2 ** -20, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 0.1, -2.5e-3];
    const rng = new Rng(5);
    for (let i = 0; i < 40; i++) vals.push((rng.uniform() - 0.5) * 10 ** Math.floor(rng.uniform() * 8 - 4));
    const src = tensor(device, Float32Array.from(vals), [vals.length]); // odd length: 57
    const half = f16Of(src);
    const back = empty(device, [vals.length]);
    castToF32(device, half.buffer, back);
    const got = await back.toArray();
    vals.forEach((v, i) => assert.equal(got[i], toHalf(Math.fround(v)), `element ${i}: ${v}`));
    [src, back, half].forEach((x) => x.dispose());
  });

  it('matmul with f16 operands, f32 accumulation: transposes, unaligned sizes, several tiles', async (t) => {
    if (!device.hasShaderF16) return t.skip('no shader-f16 on this adapter');
    const rng = new Rng(11);
    const cases: [number, number, number, boolean, boolean, typeof TILE_128][] = [
      [130, 70, 36, false, false, TILE_128],
      [13, 257, 70, true, false, TILE_64x128],
      [70, 13, 13, false, true, TILE_128_DB],
      [33, 9, 129, true, true, TILE_128],
    ];
    for (const [M, N, K, transA, transB, tile] of cases) {
      const a = randomArr(rng, transA ? [K, M] : [M, K]);
      const b = randomArr(rng, transB ? [N, K] : [K, N]);
      const [ta, tb] = [upload(a), upload(b)];
      const [ha, hb] = [f16Of(ta), f16Of(tb)];
      const c = empty(device, [M, N]);
      matmulLarge(device, ha, hb, c, { transA, transB, M, N, K, batch: 1, batchA: 1, batchB: 1 }, tile, 'f16');
      const got = await c.toArray();
      const what = `${M}×${N}×${K}${transA ? ' Aᵀ' : ''}${transB ? ' Bᵀ' : ''} on ${tile.bm}×${tile.bn}`;
      assertClose(got, refMatmul(transA, transB).forward([halfArr(a), halfArr(b)]), F16_ACC, `${what}, rounded inputs`);
      assertClose(got, refMatmul(transA, transB).forward([a, b]), F16_IN, `${what}, f16 tolerance`);
      [ta, tb, ha, hb, c].forEach((x) => x.dispose());
    }
  });

  it('conv GEMMs with f16 operands: forward (+bias), grad input, split-K grad weight; strides 1 and 2', async (t) => {
    if (!device.hasShaderF16) return t.skip('no shader-f16 on this adapter');
    const rng = new Rng(12);
    for (const [batch, cin, cout, h, w, k, stride, pad] of [[3, 17, 16, 7, 13, 3, 2, 1], [8, 16, 20, 16, 16, 3, 1, 1], [2, 5, 3, 9, 9, 1, 2, 0]]) {
      const ho = Math.floor((h! + 2 * pad! - k!) / stride!) + 1;
      const wo = Math.floor((w! + 2 * pad! - k!) / stride!) + 1;
      const g = { batch: batch!, cin: cin!, h: h!, w: w!, cout: cout!, kh: k!, kw: k!, ho, wo, strideH: stride!, strideW: stride!, padH: pad!, padW: pad! };
      const x = randomArr(rng, [batch!, cin!, h!, w!]);
      const wt = randomArr(rng, [cout!, cin!, k!, k!]);
      const bias = randomArr(rng, [cout!]);
      const dyA = randomArr(rng, [batch!, cout!, ho, wo]);
      const ref = refConv2d(stride!, pad!);
      const [tx, tw, tb, tdy] = [upload(x), upload(wt), upload(bias), upload(dyA)];
      const [hx, hw, hdy] = [f16Of(tx), f16Of(tw), f16Of(tdy)];
      const y = empty(device, [batch!, cout!, ho, wo]);
      const dx = empty(device, [batch!, cin!, h!, w!]);
      const dw = empty(device, [cout!, cin!, k!, k!]);
      // the weight gradient split over K as on a GPU (partials, summed here)
      const gpuProfile = { ...device, isSoftwareAdapter: false, policy: { ...device.policy, conv: { ...device.policy.conv, path: 'buffer' as const } } };
      const { splits, chunk } = gradWeightSplits(g, gpuProfile);
      const parts = empty(device, [splits * dw.size]);
      conv2dForwardLarge(device, hx, hw, tb, y, g, TILE_128, 'f16');
      conv2dGradInputLarge(device, hdy, hw, dx, g, TILE_64x128, 'f16');
      conv2dGradWeightLarge(device, hdy, hx, splits > 1 ? parts : dw, g, TILE_128, splits, chunk, 'f16');
      const what = `conv ${JSON.stringify(g)}`;
      const yRef = ref.forward([halfArr(x), halfArr(wt), bias]);
      assertClose(await y.toArray(), yRef, F16_ACC, `${what} forward, rounded inputs`);
      assertClose(await y.toArray(), ref.forward([x, wt, bias]), F16_IN, `${what} forward, f16 tolerance`);
      const [gx, gw] = ref.backward([halfArr(x), halfArr(wt)], halfArr(dyA));
      assertClose(await dx.toArray(), gx!, F16_ACC, `${what} grad input`);
      let gotW = await (splits > 1 ? parts : dw).toArray();
      if (splits > 1) gotW = Float32Array.from({ length: dw.size }, (_, i) => { let s = 0; for (let z = 0; z < splits; z++) s += gotW[z * dw.size + i]!; return s; });
      assertClose(gotW, gw!, { atol: 3e-5, rtol: 1e-4 }, `${what} grad weight (${splits} splits)`);
      assert.ok(convGemms(g).gradWeight[2]! > 0);
      [tx, tw, tb, tdy, hx, hw, hdy, y, dx, dw, parts].forEach((z) => z.dispose());
    }
  });

  it("policy precision 'f16': the engine's conv2d and matmul on the large tiles take f16 operands (forward and gradients, f16 tolerances)", async (t) => {
    if (!device.hasShaderF16) return t.skip('no shader-f16 on this adapter');
    const restore = setPolicy(device, { conv: { path: 'large', tile: TILE_64x128 }, matmul: { force: { kind: 'large', tile: TILE_128 } } });
    const saved = device.policy;
    device.policy = { ...saved, precision: 'f16' };
    try {
      const rng = new Rng(13);
      await checkOp(device, {
        inputs: [randomArr(rng, [3, 5, 9, 7]), randomArr(rng, [6, 5, 3, 3]), randomArr(rng, [6])],
        gpu: ([x, w, b]) => conv2d(x!, w!, b, { stride: 2, padding: 1 }),
        ref: refConv2d(2, 1),
        tol: F16_IN,
        gradTol: F16_IN,
      });
      await checkOp(device, { inputs: [randomArr(rng, [13, 36]), randomArr(rng, [36, 70])], gpu: ([a, b]) => matmul(a!, b!), ref: refMatmul(false, false), tol: F16_IN, gradTol: F16_IN });
      // and the f16 path really ran: the same matmul in f32 differs from it
      const a = randomArr(rng, [64, 64]);
      const b = randomArr(rng, [64, 64]);
      const run = async (): Promise<Float32Array> => {
        const [ta, tb] = [upload(a), upload(b)];
        const c = matmul(ta, tb);
        const got = await c.toArray();
        [ta, tb, c].forEach((z) => z.dispose());
        return got;
      };
      const half = await run();
      device.policy = { ...device.policy, precision: 'f32' };
      assert.notDeepEqual(half, await run());
      assertClose(half, refMatmul(false, false).forward([halfArr(a), halfArr(b)]), F16_ACC, 'f16 operands');
    } finally {
      device.policy = saved;
      restore();
    }
  });

  it('matmul on subgroup matrices (tensor cores; where the adapter offers f16×f16→f32 ones)', async (t) => {
    const why = subgroupMatrixProblem(device, 128, 192, 64);
    if (why) return t.skip(why);
    const rng = new Rng(14);
    const a = randomArr(rng, [128, 64]);
    const b = randomArr(rng, [64, 192]);
    const [ta, tb] = [upload(a), upload(b)];
    const [ha, hb] = [f16Of(ta), f16Of(tb)];
    const c = empty(device, [128, 192]);
    matmulSubgroupMatrix(device, ha, hb, c, 128, 192, 64);
    assertClose(await c.toArray(), refMatmul(false, false).forward([halfArr(a), halfArr(b)]), F16_ACC, 'subgroup matrices, rounded inputs');
    [ta, tb, ha, hb, c].forEach((x) => x.dispose());
  });
});
