// The large-tile GEMM family (kernels/gemmLarge.ts: 128×128 with 8×8 per thread,
// double-buffered, 128×64, 64×128), forced through the kernel policy on this
// adapter (on a discrete GPU the planners pick it for products that fill the GPU:
// test/plans-large.test.ts): matmul (every transpose, batched and broadcast, the
// fused bias) and the conv GEMMs (forward, grad input, grad weight) against the
// float64 references, on random shapes whose sizes are and are not multiples of the
// tile and of 4 (the vec4 and scalar quad loads).
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type Device, Rng, SGD, conv2d, linear, matmul, softmaxCrossEntropy, tensor, tidy } from '../engine/index.ts';
import { buildModel } from '../models/index.ts';
import { LARGE_TILES, TILE_128, TILE_64x128, tileName } from '../kernels/gemmLarge.ts';
import { assertClose, checkOp, destroyTestDevice, randomArr, setPolicy, testDevice } from './helpers.ts';
import { refLinear, refMatmul } from './reference.ts';
import { refConv2d } from './reference-conv.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const GRAD_TOL = { atol: 3e-5, rtol: 1e-4 };
// 130 and 257: more than one tile, not a multiple of it; 1, 3, 13: scalar quads
const dim = fc.constantFrom(1, 3, 4, 13, 36, 130, 257);

async function checkMatmul(M: number, N: number, K: number, transA: boolean, transB: boolean, ba: number, bb: number, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const a = randomArr(rng, [...(ba ? [ba] : []), ...(transA ? [K, M] : [M, K])]);
  const b = randomArr(rng, [...(bb ? [bb] : []), ...(transB ? [N, K] : [K, N])]);
  await checkOp(device, { inputs: [a, b], gpu: ([x, y]) => matmul(x!, y!, { transA, transB }), ref: refMatmul(transA, transB), seed });
}

type ConvCase = [batch: number, cin: number, cout: number, h: number, w: number, k: number, stride: number, pad: number];

async function checkConv([batch, cin, cout, h, w, k, stride, pad]: ConvCase, seed: number): Promise<void> {
  const rng = new Rng(seed);
  await checkOp(device, {
    inputs: [randomArr(rng, [batch, cin, h, w]), randomArr(rng, [cout, cin, k, k]), randomArr(rng, [cout])],
    gpu: ([x, wt, b]) => conv2d(x!, wt!, b, { stride, padding: pad }),
    ref: refConv2d(stride, pad),
    gradTol: GRAD_TOL,
    seed,
  });
}

describe('large-tile matmul', () => {
  it(`the production tile (${tileName(TILE_128)}): transposes, batches, aligned and unaligned sizes, and the fused bias`, async () => {
    const restore = setPolicy(device, { matmul: { force: { kind: 'large', tile: TILE_128 } } });
    try {
      await fc.assert(
        fc.asyncProperty(dim, dim, dim, fc.boolean(), fc.boolean(), fc.constantFrom(0, 1, 2), fc.constantFrom(0, 1, 2), fc.nat(), async (M, N, K, transA, transB, ba, bb, seed) => {
          await checkMatmul(M, N, K, transA, transB, ba, ba > 1 && bb > 1 ? ba : bb, seed);
        }),
        { numRuns: 6 },
      );
      for (const [n, i, o] of [[5, 8, 10], [130, 36, 13]] as const) {
        const rng = new Rng(n * i * o);
        await checkOp(device, { inputs: [randomArr(rng, [n, i]), randomArr(rng, [o, i]), randomArr(rng, [o])], gpu: ([x, w, b]) => linear(x!, w!, b), ref: refLinear });
      }
    } finally {
      restore();
    }
  });

  it('every tile of the family (double-buffered, 128×64, 64×128) on shapes across tile edges', async () => {
    for (const tile of LARGE_TILES) {
      const restore = setPolicy(device, { matmul: { force: { kind: 'large', tile } } });
      try {
        await checkMatmul(130, 70, 36, false, false, 2, 1, 1);
        await checkMatmul(13, 257, 70, true, false, 0, 0, 2);
      } finally {
        restore();
      }
    }
  });
});

describe('large-tile conv GEMMs', () => {
  it(`the production tile (${tileName(TILE_128)}): forward, grad input and split-K grad weight on odd shapes, strides 1 and 2, 1×1, 3×3 and 5×5`, async () => {
    const restore = setPolicy(device, { conv: { path: 'large', tile: TILE_128 } });
    try {
      const cases: ConvCase[] = [
        [2, 3, 5, 11, 9, 3, 1, 1],
        [3, 17, 16, 7, 13, 3, 2, 1],
        [2, 5, 3, 9, 9, 1, 2, 0],
        [8, 16, 64, 16, 16, 3, 1, 1], // split-K weight gradient
        [2, 3, 4, 11, 9, 5, 2, 2], // kernel size from the uniforms
      ];
      for (const [i, c] of cases.entries()) await checkConv(c, i + 1);
    } finally {
      restore();
    }
  });

  it('every tile of the family', async () => {
    for (const tile of LARGE_TILES) {
      const restore = setPolicy(device, { conv: { path: 'large', tile } });
      try {
        await checkConv([3, 17, 16, 7, 13, 3, 2, 1], 5);
        await checkConv([4, 16, 130, 9, 9, 3, 1, 1], 6);
      } finally {
        restore();
      }
    }
  });
});

describe('training on the large tiles', () => {
  it('a ResNet-8 with every conv and matmul forced onto the large tiles (split-K weight gradients, SGD momentum) tracks the default kernels step by step', async () => {
    const rng = new Rng(31);
    const xs = Float32Array.from({ length: 8 * 3 * 16 * 16 }, () => rng.normal());
    const ys = Int32Array.from({ length: 8 }, (_, i) => i % 10);
    const run = async (large: boolean): Promise<{ losses: number[]; weights: number[] }> => {
      const restore = large ? setPolicy(device, { conv: { path: 'large', tile: TILE_64x128 }, matmul: { force: { kind: 'large', tile: TILE_128 } } }) : () => {};
      const model = buildModel('resnet8', device, { numClasses: 10, width: 8, seed: 4 });
      const opt = new SGD({ params: model.parameters(), lr: 0.05, momentum: 0.9 });
      const losses: number[] = [];
      try {
        for (let step = 0; step < 3; step++) {
          const loss = tidy(() => {
            const l = softmaxCrossEntropy(model.forward(tensor(device, xs, [8, 3, 16, 16])), tensor(device, ys, [8], 'i32'));
            l.backward();
            return l;
          });
          losses.push((await loss.toArray())[0]!);
          loss.dispose();
          opt.step();
          opt.zeroGrad();
        }
        return { losses, weights: [...(await model.parameters()[0]!.toArray())] };
      } finally {
        model.dispose();
        restore();
      }
    };
    const base = await run(false);
    const large = await run(true);
    assertClose(Float32Array.from(large.losses), { shape: [3], data: Float64Array.from(base.losses) }, { atol: 1e-5, rtol: 1e-4 }, 'losses');
    assertClose(Float32Array.from(large.weights), { shape: [large.weights.length], data: Float64Array.from(base.weights) }, { atol: 1e-5, rtol: 1e-4 }, 'stem weights after 3 steps');
  });
});
