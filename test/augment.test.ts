// GPU augmentation against the float64 CPU reference with the same per-image
// parameters: bit-exact (the kernel's f32 lookup table holds fround of the
// reference's values), on random shapes and options; the reference itself
// checked by hand on a tiny image; the parameter sampler's ranges.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { type Device, Rng } from '../engine/index.ts';
import { AUGMENT_PARAMS_PER_IMAGE, Augmenter, augmentReference, normalizationTable, packBytes, sampleAugmentParams } from '../data/augment.ts';
import { CIFAR10_NORMALIZATION } from '../data/cifar.ts';
import { BatchLoader } from '../data/loader.ts';
import { syntheticDataset } from '../data/synthetic.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

let device: Device;
before(async () => {
  device = await testDevice();
});
after(destroyTestDevice);

function assertExact(got: Float32Array, want: Float64Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== Math.fround(want[i]!)) assert.fail(`${what}: element ${i} is ${got[i]}, reference ${want[i]}`);
  }
}

describe('augmentation on the GPU', () => {
  it('equals the CPU reference exactly: random shapes, padding, flips and cutout', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 1, max: 5 }),
          c: fc.constantFrom(1, 2, 3),
          h: fc.integer({ min: 3, max: 12 }),
          w: fc.integer({ min: 3, max: 12 }),
          padding: fc.constantFrom(0, 1, 2, 4),
          flip: fc.boolean(),
          cutout: fc.constantFrom(0, 1, 3, 4, 8),
          seed: fc.integer(),
          train: fc.boolean(),
        }),
        async (o) => {
          const rng = new Rng(o.seed);
          const shape = [o.c, o.h, o.w] as const;
          const images = Uint8Array.from({ length: o.n * o.c * o.h * o.w }, () => rng.int(256));
          const norm = { mean: Array.from({ length: o.c }, () => rng.uniform(0.3, 0.6)), std: Array.from({ length: o.c }, () => rng.uniform(0.2, 0.3)) };
          const aug = new Augmenter(device, shape, { normalization: norm, padding: o.padding, flip: o.flip, cutout: o.cutout });
          try {
            const params = o.train ? aug.sample(rng, o.n) : null;
            const t = aug.apply(images, params);
            const got = await t.toArray();
            t.dispose();
            assertExact(got, augmentReference(images, shape, params, norm, o.cutout), JSON.stringify(o));
          } finally {
            aug.dispose();
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('a CIFAR-sized batch from the loader (128×3×32×32, cutout 16) is exact too', async () => {
    const { train } = syntheticDataset({ trainSize: 256, testSize: 0 });
    const loader = new BatchLoader(train, { batchSize: 128, seed: 5 });
    const opts = { normalization: CIFAR10_NORMALIZATION, cutout: 16 };
    const aug = new Augmenter(device, train.shape, opts);
    const batch = loader.next();
    const params = aug.sample(batch.rng, 128);
    const t = aug.apply(batch.images, params);
    assert.deepEqual(t.shape, [128, 3, 32, 32]);
    assertExact(await t.toArray(), augmentReference(batch.images, train.shape, params, opts.normalization, 16), 'cifar batch');
    // eval mode: normalisation only
    const e = aug.eval(batch.images);
    assertExact(await e.toArray(), augmentReference(batch.images, train.shape, null, opts.normalization), 'eval');
    t.dispose();
    e.dispose();
    aug.dispose();
  });

  it('refuses a batch that is not whole images', () => {
    const aug = new Augmenter(device, [3, 4, 4], { normalization: { mean: [0, 0, 0], std: [1, 1, 1] } });
    assert.throws(() => aug.eval(new Uint8Array(47)), /47 bytes is not a whole, non-zero number of \[3, 4, 4\] images/);
    assert.throws(() => aug.apply(new Uint8Array(48), new Int32Array(4)), /4 params for 1 images/);
    aug.dispose();
  });
});

describe('the CPU reference and the parameters', () => {
  // One 4×4 channel, pixels 1..16 row by row; normalisation mean 0, std 1/255
  // so outputs are the pixel values. Worked by hand from torchvision's definitions:
  // RandomCrop pads 1 pixel of zeros → 6×6, takes the 4×4 window at (top, left) =
  // (dy + 1, dx + 1); RandomHorizontalFlip mirrors that window.
  const img = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
  const norm = { mean: [0], std: [1 / 255] };
  const run = (p: number[], cutout = 0): number[] => [...augmentReference(img, [1, 4, 4], Int32Array.from(p), norm, cutout)].map((v) => Math.round(v));

  it('crop offset (dy, dx) = (1, −1): shifted up one row, right one column, zeros come in', () => {
    assert.deepEqual(run([1, -1, 0, 0, 0]), [
      0, 5, 6, 7,
      0, 9, 10, 11,
      0, 13, 14, 15,
      0, 0, 0, 0,
    ]);
  });

  it('flip after the crop', () => {
    assert.deepEqual(run([0, 1, 1, 0, 0]), [
      0, 4, 3, 2,
      0, 8, 7, 6,
      0, 12, 11, 10,
      0, 16, 15, 14,
    ]);
  });

  it('cutout of side 2 centred at (1, 3): rows 0–1, columns 2–3 become 0 after normalisation', () => {
    const out = [...augmentReference(img, [1, 4, 4], Int32Array.of(0, 0, 0, 1, 3), { mean: [0.5], std: [0.25] }, 2)];
    const zeroed = out.map((v, i) => (v === 0 ? i : -1)).filter((i) => i >= 0);
    assert.deepEqual(zeroed, [2, 3, 6, 7]);
    // odd sizes cut floor(side/2) either way, as DeVries & Taylor's code: side 3 cuts a 2×2 square
    assert.deepEqual(run([0, 0, 0, 0, 0], 3).slice(0, 4), [0, 2, 3, 4]);
  });

  it('the sampler draws offsets in [−p, p], fair flips, cutout centres anywhere; seeded', () => {
    const p = sampleAugmentParams(new Rng(9), 4000, [3, 32, 32], { normalization: CIFAR10_NORMALIZATION, padding: 4, cutout: 16 });
    const col = (k: number): number[] => Array.from({ length: 4000 }, (_, i) => p[i * AUGMENT_PARAMS_PER_IMAGE + k]!);
    for (const k of [0, 1]) assert.deepEqual([...new Set(col(k))].sort((a, b) => a - b), [-4, -3, -2, -1, 0, 1, 2, 3, 4]);
    const flips = col(2).reduce((a, b) => a + b, 0);
    assert.ok(flips > 1850 && flips < 2150, `${flips} flips of 4000`);
    for (const k of [3, 4]) assert.deepEqual([...new Set(col(k))].sort((a, b) => a - b), Array.from({ length: 32 }, (_, i) => i));
    assert.deepEqual(p, sampleAugmentParams(new Rng(9), 4000, [3, 32, 32], { normalization: CIFAR10_NORMALIZATION, padding: 4, cutout: 16 }));
    const none = sampleAugmentParams(new Rng(9), 10, [3, 32, 32], { normalization: CIFAR10_NORMALIZATION, padding: 0, flip: false });
    assert.ok(none.every((v) => v === 0));
  });

  it('the lookup table is (v/255 − mean)/std in f32, and refuses a zero std', () => {
    const lut = normalizationTable(CIFAR10_NORMALIZATION, 3);
    assert.equal(lut[0], Math.fround(-0.4914 / 0.247));
    assert.equal(lut[256 + 255], Math.fround((1 - 0.4822) / 0.2435));
    assert.throws(() => normalizationTable({ mean: [0], std: [0] }, 1), /std of channel 0 must be > 0/);
    assert.throws(() => normalizationTable({ mean: [0], std: [1] }, 3), /1 means and 1 stds for 3 channels/);
  });

  it('packs bytes little-endian four to a word, zero-padded', () => {
    assert.deepEqual([...packBytes(Uint8Array.of(1, 2, 3, 4, 5))], [0x04030201, 5]);
  });
});
