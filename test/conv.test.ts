// conv2d forward, input gradient and weight gradient (implicit-GEMM kernels)
// against the naive float64 reference on fast-check-generated shapes: batch 1 and
// odd batches, channels among 1, 3, 5, 16, 17, spatial sizes 1..33, stride 1 and 2,
// padding 0 and 1, kernels 1×1 and 3×3; the reference's backward by finite
// differences; bad shapes rejected before any GPU work.
//
// Tolerances: forward and grad input reduce over K = Cin·KH·KW ≤ 153 products, the
// default (1e-5 of the largest reference magnitude + 1e-4 relative) holds with
// room to spare. The weight gradient reduces over K = batch·Ho·Wo (up to 5445
// here) in f32 chunks, so its absolute part is 3e-5 of the largest magnitude.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type Device, Rng, conv2d, conv2dBackwardFilter, conv2dBackwardInput, sum, tensor, tidy } from '../engine/index.ts';
import { gradWeightSplits } from '../kernels/conv2d.ts';
import { textureConvSupported, useTextureConv } from '../kernels/conv2dTexture.ts';
import { isSoftwareAdapter } from '../kernels/common.ts';
import { rowConvFits, rowGradWeightFits } from '../kernels/conv2dRows.ts';
import { planConv } from '../kernels/convPlan.ts';
import { assertClose, checkOp, checkRefGrad, destroyTestDevice, randomArr, setPolicy, testDevice } from './helpers.ts';
import { refConv2d, refOutSize } from './reference-conv.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const GRAD_TOL = { atol: 3e-5, rtol: 1e-4 };

const convCase = fc
  .record({
    batch: fc.constantFrom(1, 2, 3, 5),
    cin: fc.constantFrom(1, 3, 5, 16, 17),
    cout: fc.constantFrom(1, 3, 5, 16, 17),
    h: fc.integer({ min: 1, max: 33 }),
    w: fc.integer({ min: 1, max: 33 }),
    k: fc.constantFrom(1, 3),
    stride: fc.constantFrom(1, 2),
    padding: fc.constantFrom(0, 1),
    bias: fc.boolean(),
    seed: fc.nat(),
  })
  .filter((c) => c.k <= c.h + 2 * c.padding && c.k <= c.w + 2 * c.padding);

/** conv2d of a generated case against the reference: forward and every gradient. */
async function checkConvCase(c: { batch: number; cin: number; cout: number; h: number; w: number; k: number; stride: number; padding: number; bias: boolean; seed: number }): Promise<void> {
  const rng = new Rng(c.seed);
  const inputs = [randomArr(rng, [c.batch, c.cin, c.h, c.w]), randomArr(rng, [c.cout, c.cin, c.k, c.k])];
  if (c.bias) inputs.push(randomArr(rng, [c.cout]));
  await checkOp(device, {
    inputs,
    gpu: ([x, w, b]) => conv2d(x!, w!, b, { stride: c.stride, padding: c.padding }),
    ref: refConv2d(c.stride, c.padding),
    gradTol: GRAD_TOL,
    seed: c.seed,
  });
}

describe('conv2d', () => {
  it('forward, input gradient and weight gradient match the reference', async () => {
    await fc.assert(
      fc.asyncProperty(convCase, checkConvCase),
      { numRuns: 15 },
    );
  });

  // What training runs: ResNet-like geometries (3×3 padding 1 or 1×1 without, stride 1
  // or 2, widths of whole lanes) at the production policy, where the planner gives the
  // row kernels on a software adapter with subgroups of 8 (asserted, so the property
  // cannot drift onto another kernel) and the buffer kernels on a GPU.
  it('at the production configuration: the kernels the planner picks for ResNet-like layers match the reference', async () => {
    const production = fc
      .record({
        batch: fc.constantFrom(1, 2),
        cin: fc.constantFrom(4, 8, 16),
        cout: fc.constantFrom(4, 8, 16),
        k: fc.constantFrom(1, 3),
        stride: fc.constantFrom(1, 2),
        lanes: fc.constantFrom(1, 2, 4), // output lanes of 4 pixels per row
        rows: fc.constantFrom(4, 8), // output rows (whole 64-float texture rows of X and dY)
        bias: fc.constant(false),
        seed: fc.nat(),
      })
      .map((c) => ({ ...c, w: 4 * c.lanes * c.stride, h: c.rows * c.stride, padding: (c.k - 1) / 2 }));
    await fc.assert(
      fc.asyncProperty(production, async (c) => {
        const g = { batch: c.batch, cin: c.cin, h: c.h, w: c.w, cout: c.cout, kh: c.k, kw: c.k, ho: c.h / c.stride, wo: c.w / c.stride, strideH: c.stride, strideW: c.stride, padH: c.padding, padW: c.padding };
        const plan = planConv(device, g);
        const expected = isSoftwareAdapter(device) && textureConvSupported(device) ? 'rows' : 'buffer';
        assert.deepEqual([plan.forward, plan.gradInput, plan.gradWeight], [expected, expected, expected], JSON.stringify(g));
        await checkConvCase({ ...c, seed: c.seed });
      }),
      { numRuns: 10 },
    );
  });

  // The property above runs whichever path this adapter takes ('auto': the texture
  // kernels on lavapipe, the buffer kernels on GPUs); the other one is checked here.
  it('the other conv path (buffer kernels on lavapipe, texture kernels where a GPU has subgroups of 8) matches too', async (t) => {
    const other = isSoftwareAdapter(device) && textureConvSupported(device) ? 'buffer' : 'texture';
    if (other === 'texture' && !textureConvSupported(device)) return t.skip('this adapter has no subgroups of 8 lanes: only the buffer kernels run here');
    const restore = setPolicy(device, { conv: { path: other } });
    try {
      await fc.assert(
        fc.asyncProperty(convCase, checkConvCase),
        { numRuns: 8 },
      );
    } finally {
      restore();
    }
  });

  it('texture path: wide layers (32-row blocks), wide rows, stride 2 and 3 phases', async (t) => {
    if (!textureConvSupported(device)) return t.skip('no subgroups of 8 lanes on this adapter');
    const restore = setPolicy(device, { conv: { path: 'texture', tm: 32 } });
    try {
      const rng = new Rng(21);
      for (const [cin, cout, size, k, stride, padding] of [
        [20, 40, 10, 3, 1, 1],
        [6, 9, 13, 3, 3, 0],
        [5, 7, 9, 5, 2, 2],
        [4, 6, 40, 3, 1, 1], // rows wider than one grad-weight column block (8 lanes × 4)
        [3, 8, 2, 1, 2, 1], // 1×1 stride 2 with padding: phases no tap reaches
      ] as const) {
        await checkOp(device, {
          inputs: [randomArr(rng, [3, cin, size, size + 1]), randomArr(rng, [cout, cin, k, k]), randomArr(rng, [cout])],
          gpu: ([x, w, b]) => conv2d(x!, w!, b, { stride, padding }),
          ref: refConv2d(stride, padding),
          gradTol: GRAD_TOL,
        });
      }
    } finally {
      restore();
    }
  });

  it('texture path, row kernel (NCHW read through a copied texture): 1 to 16 lanes per row, 4 or 8 pixels per lane, direct or Winograd, strides 1 and 2, 1×1 and 3×3, 16- and 32-channel blocks, 1×1 weights packed or copied raw, 1×1 weight gradients, channels not multiples of 4 or of the block, the grid with channel blocks or pixels first; and the repacked correlation on the same shapes', async (t) => {
    if (!textureConvSupported(device)) return t.skip('no subgroups of 8 lanes on this adapter');
    const restore = setPolicy(device, { conv: { path: 'texture' } });
    const base = { batch: 2, cin: 4, h: 8, w: 8, cout: 8, kh: 3, kw: 3, ho: 8, wo: 8, strideH: 1, strideW: 1, padH: 1, padW: 1 };
    for (const [why, g] of [
      ['3 lanes per row', { ...base, w: 12, wo: 12 }],
      ['odd height at stride 2', { ...base, h: 7, ho: 4, w: 16, wo: 8, strideH: 2, strideW: 2 }],
      ['no padding', { ...base, padH: 0, padW: 0, ho: 6, wo: 6 }],
      ['a weight pack grid past 65535 workgroups', { ...base, cin: 1280, cout: 1280, h: 16, w: 16, ho: 16, wo: 16 }],
    ] as const) {
      assert.ok(!rowConvFits(device, g, false) && !rowConvFits(device, g, true), `the row kernel declines ${why}`);
    }
    try {
      const rng = new Rng(41);
      for (const [batch, cin, cout, h, w, k, stride] of [
        [3, 5, 17, 8, 16, 3, 1], // 4 lanes per row, 17 output channels: two blocks, one partial
        [2, 20, 6, 8, 8, 3, 1], // 2 lanes per row; grad input in two 16-channel blocks
        [2, 4, 8, 4, 4, 3, 1], // 1 lane per row: both neighbours are padding
        [2, 3, 16, 32, 32, 3, 1], // the stem: 8 lanes per row
        [3, 12, 20, 16, 16, 3, 2], // stride 2: 2 lanes per output row; grad input in two 8-channel blocks
        [2, 4, 8, 8, 64, 3, 2], // stride 2, 8 lanes per row: grad input's right neighbours across the whole subgroup
        [2, 4, 16, 8, 8, 3, 2], // stride 2, 1 lane per row
        [2, 20, 18, 8, 32, 1, 2], // 1×1 stride 2 (a projection shortcut): 32-channel blocks both ways, grad input scattered, partial quads, weight gradient in 2×3 blocks
        [2, 4, 24, 2, 64, 1, 1], // 1×1, 16 lanes per row (no neighbours needed)
        [3, 5, 8, 8, 8, 1, 1], // 1×1 stride 1, a partial channel quad
        [2, 16, 36, 8, 16, 1, 2], // 1×1 stride 2, weights copied raw (36·16 a multiple of 64); the partial block's rows read past the copy
        [2, 8, 24, 4, 16, 1, 1], // 1×1 stride 1, weights copied raw, one partial 32-channel block
      ] as const) {
        const padding = (k - 1) / 2;
        const g = { batch, cin, h, w, cout, kh: k, kw: k, ho: h / stride, wo: w / stride, strideH: stride, strideW: stride, padH: padding, padW: padding };
        assert.ok(rowConvFits(device, g, false), `row kernel takes the forward of ${JSON.stringify(g)}`);
        assert.ok(rowConvFits(device, g, true), `row kernel takes the grad input of ${JSON.stringify(g)}`);
        if (w % (4 * stride) === 0) assert.ok(rowGradWeightFits(device, g), `row kernel takes the weight gradient of ${JSON.stringify(g)}`);
        const inputs = [randomArr(rng, [batch, cin, h, w]), randomArr(rng, [cout, cin, k, k]), randomArr(rng, [cout])];
        // row kernels with 8 pixels per lane where rows allow (the default), with 4, both by Winograd's F(4,3)
        // where they are 3×3 at stride 1, the default's grid with the pixels first (rowChannelsFastest off), and the repacked kernels
        for (const [rows, rowPixels, winograd, rowChannelsFastest] of [[true, 8, false, true], [true, 8, false, false], [true, 4, false, true], [true, 8, true, true], [true, 4, true, true], [false, 8, false, true]] as const) {
          setPolicy(device, { conv: { rows, rowPixels, winograd, rowChannelsFastest } }); // the outer restore() undoes it
          await checkOp(device, {
            inputs,
            gpu: ([x, wt, b]) => conv2d(x!, wt!, b, { stride, padding }),
            ref: refConv2d(stride, padding),
            gradTol: GRAD_TOL,
          });
        }
      }
    } finally {
      restore();
    }
  });

  it('what the forward saves for the weight gradient is freed after backward, or with the graph when no backward runs', async () => {
    const rng = new Rng(31);
    const xd = randomArr(rng, [2, 4, 8, 7]); // width 7: the repacked kernels, which keep X packed (not the row kernels)
    const wd = randomArr(rng, [4, 4, 3, 3]);
    const x = tensor(device, xd.data, xd.shape);
    const w = tensor(device, wd.data, wd.shape).requireGrad();
    await device.sync();
    const base = device.memoryStats().liveBytes;
    tidy(() => {
      conv2d(x, w, null, { padding: 1 }); // never backpropagated
    });
    assert.equal(device.memoryStats().liveBytes, base, 'forward without backward');
    tidy(() => {
      sum(conv2d(x, w, null, { padding: 1 })).backward();
    });
    w.grad?.dispose();
    w.grad = null;
    assert.equal(device.memoryStats().liveBytes, base, 'forward and backward');
    await device.sync();
    x.dispose();
    w.dispose();
  });

  it('the texture path declines geometries whose grids or textures exceed the device limits', () => {
    const g = { batch: 8, cin: 16, h: 16, w: 16, cout: 16, kh: 3, kw: 3, ho: 16, wo: 16, strideH: 1, strideW: 1, padH: 1, padW: 1 };
    const restore = setPolicy(device, { conv: { path: 'texture' } });
    try {
      if (textureConvSupported(device)) assert.ok(useTextureConv(device, g), 'a small conv takes the texture path');
      // 2048 → 2048 channels: the weight pack's 1-D grid alone exceeds 65535 workgroups
      assert.equal(useTextureConv(device, { ...g, cin: 2048, cout: 2048 }), false);
      assert.equal(useTextureConv(device, { ...g, batch: device.limits.maxTextureArrayLayers + 1 }), false);
    } finally {
      restore();
    }
  });

  it('non-square kernels, strides and padding', async () => {
    const rng = new Rng(7);
    for (const [k, stride, padding] of [
      [[1, 3], [2, 1], [0, 1]],
      [[3, 1], [1, 2], [1, 0]],
      [[5, 5], [2, 2], [2, 2]],
      [[7, 7], [2, 2], [3, 3]],
      [[3, 3], [3, 3], [1, 1]],
    ] as [number, number][][]) {
      await checkOp(device, {
        inputs: [randomArr(rng, [2, 3, 11, 9]), randomArr(rng, [4, 3, k[0]!, k[1]!]), randomArr(rng, [4])],
        gpu: ([x, w, b]) => conv2d(x!, w!, b, { stride: stride as [number, number], padding: padding as [number, number] }),
        ref: refConv2d(stride as [number, number], padding as [number, number]),
        gradTol: GRAD_TOL,
      });
    }
  });

  it('CIFAR ResNet shapes (64-row tiles, split-K weight gradient)', async () => {
    const rng = new Rng(3);
    // a stride-2 3×3 downsampling conv and its 1×1 projection (16 → 32 channels),
    // and a 3×3 stride-1 conv whose weight gradient splits K = 8·16·16 four ways
    const g = { batch: 8, cin: 16, h: 16, w: 16, cout: 64, kh: 3, kw: 3, ho: 16, wo: 16, strideH: 1, strideW: 1, padH: 1, padW: 1 };
    assert.ok(gradWeightSplits(g, device).splits > 1, 'this shape exercises split-K');
    for (const [cout, k, stride, padding] of [
      [32, 3, 2, 1],
      [32, 1, 2, 0],
      [64, 3, 1, 1],
    ] as const) {
      await checkOp(device, {
        inputs: [randomArr(rng, [8, 16, 16, 16]), randomArr(rng, [cout, 16, k, k])],
        gpu: ([x, w]) => conv2d(x!, w!, null, { stride, padding }),
        ref: refConv2d(stride, padding),
        gradTol: GRAD_TOL,
      });
    }
  });

  // On a GPU every test here already runs the unrolled kernels. Software adapters get
  // the rolled loops (kernels/conv2d.ts: compile time); forcing the unrolled form
  // there costs about 15 s of LLVM per kernel on a cold shader cache, so it is opt-in.
  it('the unrolled kernels compute the same (on software adapters with TEST_UNROLLED=1)', async (t) => {
    if (isSoftwareAdapter(device) && process.env.TEST_UNROLLED !== '1') return t.skip('set TEST_UNROLLED=1 to compile the unrolled kernels on lavapipe');
    const restore = setPolicy(device, { conv: { unroll: true } });
    try {
      const rng = new Rng(12);
      await checkOp(device, {
        inputs: [randomArr(rng, [3, 5, 9, 7]), randomArr(rng, [17, 5, 3, 3]), randomArr(rng, [17])],
        gpu: ([x, w, b]) => conv2d(x!, w!, b, { stride: 2, padding: 1 }),
        ref: refConv2d(2, 1),
        gradTol: GRAD_TOL,
      });
      // 64-row tiles with 8×4 blocks in all three kernels
      await checkOp(device, {
        inputs: [randomArr(rng, [2, 64, 6, 6]), randomArr(rng, [64, 64, 3, 3])],
        gpu: ([x, w]) => conv2d(x!, w!, null, { padding: 1 }),
        ref: refConv2d(1, 1),
        gradTol: GRAD_TOL,
      });
    } finally {
      restore();
    }
  });

  it('standalone backward ops agree with autograd', async () => {
    const rng = new Rng(11);
    const x = randomArr(rng, [3, 5, 9, 9]);
    const w = randomArr(rng, [6, 5, 3, 3]);
    const opts = { stride: 2, padding: 1 };
    const ref = refConv2d(2, 1);
    const g = randomArr(rng, ref.forward([x, w]).shape);
    const [gx, gw] = ref.backward([x, w], g);
    const [dx, dw] = tidy(() => {
      const dy = tensor(device, g.data, g.shape);
      return [
        conv2dBackwardInput(dy, tensor(device, w.data, w.shape), x.shape, opts),
        conv2dBackwardFilter(dy, tensor(device, x.data, x.shape), w.shape, opts),
      ];
    });
    assertClose(await dx.toArray(), gx!, GRAD_TOL, 'conv2dBackwardInput');
    assertClose(await dw.toArray(), gw!, GRAD_TOL, 'conv2dBackwardFilter');
    dx.dispose();
    dw.dispose();
  });

  it('reference backward agrees with finite differences', () => {
    const rng = new Rng(5);
    for (const [stride, padding, k] of [
      [1, 0, 3],
      [1, 1, 3],
      [2, 1, 3],
      [2, 0, 1],
    ] as const) {
      checkRefGrad(refConv2d(stride, padding), [randomArr(rng, [2, 2, 5, 4]), randomArr(rng, [3, 2, k, k]), randomArr(rng, [3])], {
        seed: stride * 10 + padding,
      });
    }
    assert.equal(refOutSize(32, 3, 2, 1), 16);
  });

  it('rejects bad shapes naming the op and the shapes', () => {
    const x = tensor(device, new Float32Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
    const w = (shape: number[]) => tensor(device, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
    assert.throws(() => conv2d(x, w([8, 5, 3, 3])), /conv2d: input has 3 channels but the weight expects 5: input \[2, 3, 4, 4\], weight \[8, 5, 3, 3\]/);
    assert.throws(() => conv2d(x, w([8, 3, 7, 7]), null, { padding: 1 }), /conv2d: kernel 7×7 is larger than the padded input 6×6.*\[2, 3, 4, 4\]/);
    assert.throws(() => conv2d(x.reshape([6, 4, 4]), w([8, 3, 3, 3])), /conv2d: input must be NCHW \(rank 4\).*\[6, 4, 4\]/);
    assert.throws(() => conv2d(x, w([8, 3, 3])), /conv2d: weight must be OIHW \(rank 4\).*\[8, 3, 3\]/);
    assert.throws(() => conv2d(x, w([8, 3, 3, 3]), w([7])), /conv2d: bias \[7\] does not match weight \[8, 3, 3, 3\]/);
    assert.throws(() => conv2d(x, w([8, 3, 3, 3]), null, { stride: 0 }), /conv2d: stride must be an integer ≥ 1/);
    assert.throws(() => conv2d(x, w([8, 3, 3, 3]), null, { padding: -1 }), /conv2d: padding must be an integer ≥ 0/);
  });
});
