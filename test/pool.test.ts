// Max, average and global average pooling, and the option-A shortcut, forward and
// backward against the float64 reference on fast-check shapes; PyTorch's tie rule
// for max pooling; bad inputs. Pooling sums at most a window (or a plane for the
// global mean) of values, so the default tolerance (1e-5 of the largest magnitude
// + 1e-4 relative) applies throughout.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type Device, Rng, avgPool2d, globalAvgPool2d, maxPool2d, subsamplePadChannels, tensor, zeros } from '../engine/index.ts';
import { checkOp, checkRefGrad, destroyTestDevice, randomArr, testDevice } from './helpers.ts';
import { arr } from './reference.ts';
import { refAvgPool2d, refGlobalAvgPool, refMaxPool2d, refSubsamplePadChannels } from './reference-conv.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

const poolCase = fc
  .record({
    batch: fc.constantFrom(1, 2, 3, 5),
    channels: fc.constantFrom(1, 3, 5, 16, 17),
    h: fc.integer({ min: 1, max: 33 }),
    w: fc.integer({ min: 1, max: 33 }),
    k: fc.constantFrom(1, 2, 3),
    stride: fc.constantFrom(1, 2, 3),
    padding: fc.constantFrom(0, 1),
    countIncludePad: fc.boolean(),
    seed: fc.nat(),
  })
  .filter((c) => 2 * c.padding <= c.k && c.k <= c.h + 2 * c.padding && c.k <= c.w + 2 * c.padding);

describe('pooling', () => {
  it('max pool matches the reference (values and argmax routing)', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, async (c) => {
        const x = randomArr(new Rng(c.seed), [c.batch, c.channels, c.h, c.w]);
        await checkOp(device, {
          inputs: [x],
          gpu: ([t]) => maxPool2d(t!, c.k, { stride: c.stride, padding: c.padding }),
          ref: refMaxPool2d(c.k, c.stride, c.padding),
          seed: c.seed,
        });
      }),
      { numRuns: 15 },
    );
  });

  it('avg pool matches the reference (with and without counting the padding)', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, async (c) => {
        const x = randomArr(new Rng(c.seed), [c.batch, c.channels, c.h, c.w]);
        await checkOp(device, {
          inputs: [x],
          gpu: ([t]) => avgPool2d(t!, c.k, { stride: c.stride, padding: c.padding, countIncludePad: c.countIncludePad }),
          ref: refAvgPool2d(c.k, c.stride, c.padding, c.countIncludePad),
          seed: c.seed,
        });
      }),
      { numRuns: 15 },
    );
  });

  it('global average pool matches the reference', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, async (c) => {
        const x = randomArr(new Rng(c.seed), [c.batch, c.channels, c.h, c.w]);
        await checkOp(device, { inputs: [x], gpu: ([t]) => globalAvgPool2d(t!), ref: refGlobalAvgPool, seed: c.seed });
      }),
      { numRuns: 10 },
    );
    // a plane larger than the workgroup, many planes; planes of whole vec4s (the ResNet head's 8×8), of one vec4
    for (const shape of [[4, 70, 17, 19], [3, 70, 8, 8], [5, 3, 2, 2]]) {
      await checkOp(device, { inputs: [randomArr(new Rng(1), shape)], gpu: ([t]) => globalAvgPool2d(t!), ref: refGlobalAvgPool });
    }
  });

  it('option-A shortcut by quads of pixels (widths a multiple of 4, strides 1, 2, 4) matches the reference', async () => {
    // [batch, channels, h, w], out channels, stride, channels before: quads both ways, or only backward (output width 6)
    for (const [shape, out, stride, before] of [
      [[2, 3, 8, 16], 8, 2, 2],
      [[2, 5, 7, 12], 9, 2, 1],
      [[1, 3, 4, 8], 5, 1, 0],
      [[2, 3, 9, 16], 6, 4, 3],
    ] as const) {
      const x = randomArr(new Rng(shape[3] * 7 + stride), [...shape]);
      await checkOp(device, { inputs: [x], gpu: ([t]) => subsamplePadChannels(t!, out, stride, before), ref: refSubsamplePadChannels(out, stride, before) });
    }
  });

  it('option-A shortcut (subsample, zero channels) matches the reference', async () => {
    await fc.assert(
      fc.asyncProperty(poolCase, fc.nat(4), fc.nat(4), async (c, before, afterPad) => {
        const x = randomArr(new Rng(c.seed), [c.batch, c.channels, c.h, c.w]);
        const out = c.channels + before + afterPad;
        await checkOp(device, {
          inputs: [x],
          gpu: ([t]) => subsamplePadChannels(t!, out, c.stride, before),
          ref: refSubsamplePadChannels(out, c.stride, before),
          seed: c.seed,
        });
      }),
      { numRuns: 8 },
    );
  });

  it('max pool sends a tie to the first maximum, as PyTorch', async () => {
    // one 2×2 window of equal values, one window with its maximum repeated
    const x = arr([1, 1, 2, 4], [5, 5, 1, 7, 5, 5, 7, 2]);
    await checkOp(device, { inputs: [x], gpu: ([t]) => maxPool2d(t!, 2), ref: refMaxPool2d(2) });
    const ref = refMaxPool2d(2).backward([x], arr([1, 1, 1, 2], [1, 1]));
    assert.deepEqual([...ref[0]!.data], [1, 0, 0, 1, 0, 0, 0, 0]);
  });

  it('reference backwards agree with finite differences', () => {
    const rng = new Rng(3);
    checkRefGrad(refMaxPool2d(3, 2, 1), [randomArr(rng, [2, 2, 5, 5])]);
    checkRefGrad(refAvgPool2d(3, 2, 1, true), [randomArr(rng, [2, 2, 5, 4])]);
    checkRefGrad(refAvgPool2d(3, 2, 1, false), [randomArr(rng, [2, 2, 5, 4])]);
    checkRefGrad(refGlobalAvgPool, [randomArr(rng, [2, 3, 3, 2])]);
    checkRefGrad(refSubsamplePadChannels(6, 2, 2), [randomArr(rng, [2, 3, 3, 5])]);
  });

  it('rejects bad inputs naming the op and the shapes', () => {
    const x = zeros(device, [2, 3, 4, 4]);
    assert.throws(() => maxPool2d(x.reshape([6, 4, 4]), 2), /maxPool2d: input must be NCHW \(rank 4\): input \[6, 4, 4\]/);
    assert.throws(() => maxPool2d(x, 2, { padding: 2 }), /maxPool2d: padding must be at most half the kernel size/);
    assert.throws(() => avgPool2d(x, 3, { padding: 2 }), /avgPool2d: padding must be at most half/);
    assert.throws(() => avgPool2d(x, 6), /avgPool2d: kernel 6×6 is larger than the padded input 4×4: input \[2, 3, 4, 4\]/);
    assert.throws(() => maxPool2d(x, 2, { stride: 0 }), /maxPool2d: stride must be an integer ≥ 1/);
    assert.throws(() => globalAvgPool2d(x.reshape([6, 16])), /globalAvgPool2d: input must be NCHW \(rank 4\), got \[6, 16\]/);
    assert.throws(() => subsamplePadChannels(x, 2), /subsamplePadChannels: 3 input channels do not fit in 2 output channels/);
    assert.throws(() => subsamplePadChannels(tensor(device, [1], [1]), 2), /subsamplePadChannels: input must be NCHW/);
  });
});
