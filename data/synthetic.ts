// A built-in dataset generated at start-up from a seed, so training works with no
// download: each class is a shape or texture (disk, square, ring, plus, X,
// triangle, horizontal / vertical / diagonal stripes, checkerboard) drawn at a
// random position and scale, in a random colour on a random background, with
// Gaussian pixel noise and a distractor blob. Colour and position carry no class
// information, so a model has to learn shape, which a small CNN does quickly,
// while a linear model on raw pixels or a nearest-class-mean template does poorly.
//
// Deterministic: the same options give the same bytes on every machine (the
// engine's xoshiro Rng; one rounding per pixel). Classes are
// balanced exactly (image i has label i mod K before a seeded shuffle).
import { Rng } from '../engine/random.ts';
import { type Dataset, computeNormalization } from './dataset.ts';

export const SYNTHETIC_CLASSES = [
  'disk', 'square', 'ring', 'plus', 'cross', 'triangle', 'h-stripes', 'v-stripes', 'd-stripes', 'checker',
] as const;

export interface SyntheticOptions {
  seed?: number;
  /** default 5000 */
  trainSize?: number;
  /** default 1000 */
  testSize?: number;
  /** side of the square images (default 32; 16 trains four times faster on lavapipe) */
  imageSize?: number;
  /** 2..10 (default 10): the first K of SYNTHETIC_CLASSES */
  numClasses?: number;
  /** standard deviation of the pixel noise on the [0, 1] scale (default 0.08) */
  noise?: number;
}

/** Whether pixel (u, v), in units of the shape's radius around its centre, is on the shape of class k. */
function onShape(k: number, u: number, v: number, period: number, phase: number): boolean {
  const r2 = u * u + v * v;
  switch (k) {
    case 0: return r2 < 1;
    case 1: return Math.abs(u) < 0.85 && Math.abs(v) < 0.85;
    case 2: return r2 < 1 && r2 > 0.36;
    case 3: return (Math.abs(u) < 0.3 && Math.abs(v) < 1) || (Math.abs(v) < 0.3 && Math.abs(u) < 1);
    case 4: return r2 < 1.2 && (Math.abs(u - v) < 0.42 || Math.abs(u + v) < 0.42);
    case 5: return v > -0.85 && v < 0.85 && Math.abs(u) < (v + 0.85) * 0.62;
    default: {
      // textures fill a square window of half-side 1.1
      if (Math.abs(u) > 1.1 || Math.abs(v) > 1.1) return false;
      const t = k === 6 ? v : k === 7 ? u : k === 8 ? (u + v) * Math.SQRT1_2 : 0;
      if (k === 9) return ((Math.floor(u / period + phase) + Math.floor(v / period + phase)) & 1) === 0;
      return Math.floor(t / period + phase) % 2 === 0;
    }
  }
}

function randomColour(rng: Rng): [number, number, number] {
  return [rng.next(), rng.next(), rng.next()];
}

const luma = (c: readonly number[]): number => 0.299 * c[0]! + 0.587 * c[1]! + 0.114 * c[2]!;

/** Draws one image of class `k` into `out` (C×S×S bytes); `noise` holds Gaussian samples in pixel units. */
function drawImage(rng: Rng, k: number, size: number, noise: Float32Array, out: Uint8Array): void {
  const bg = randomColour(rng);
  let fg = randomColour(rng);
  while (Math.abs(luma(fg) - luma(bg)) < 0.25) fg = randomColour(rng);
  const radius = size * rng.uniform(0.2, 0.34);
  const cx = size * rng.uniform(0.32, 0.68);
  const cy = size * rng.uniform(0.32, 0.68);
  const period = rng.uniform(0.3, 0.5); // in radii: 2–4 stripes across the window
  const phase = rng.next();
  // a distractor blob of a third colour, somewhere else
  const blob = randomColour(rng);
  const bx = size * rng.next();
  const by = size * rng.next();
  const br2 = (size * rng.uniform(0.04, 0.09)) ** 2;
  const plane = size * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const px = x + 0.5;
      const py = y + 0.5;
      const on = onShape(k, (px - cx) / radius, (py - cy) / radius, period, phase);
      const inBlob = (px - bx) ** 2 + (py - by) ** 2 < br2;
      const col = inBlob ? blob : on ? fg : bg;
      const bits = rng.nextU32(); // three 10-bit picks from the noise table
      for (let c = 0; c < 3; c++) {
        const v = col[c]! * 255 + noise[(bits >>> (10 * c)) & (NOISE_TABLE - 1)]!;
        out[c * plane + y * size + x] = Math.min(255, Math.max(0, Math.round(v)));
      }
    }
  }
}

// Pixel noise comes from a table of 1024 Gaussian samples, three picks per
// random word: as good as fresh draws for this purpose, and many times cheaper.
const NOISE_TABLE = 1024;

function generate(rng: Rng, n: number, k: number, size: number, noise: number, name: string): Dataset {
  const per = 3 * size * size;
  const table = Float32Array.from({ length: NOISE_TABLE }, () => noise * 255 * rng.normal());
  const labels = rng.shuffle(Int32Array.from({ length: n }, (_, i) => i % k));
  const images = new Uint8Array(n * per);
  for (let i = 0; i < n; i++) drawImage(rng, labels[i]!, size, table, images.subarray(i * per, (i + 1) * per));
  const shape: [number, number, number] = [3, size, size];
  return {
    name,
    images,
    labels,
    numClasses: k,
    classNames: SYNTHETIC_CLASSES.slice(0, k),
    shape,
    normalization: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }, // replaced below by the train set's own
  };
}

/** Train and test splits of the synthetic shapes dataset; both normalise with the train set's statistics. */
export function syntheticDataset(options: SyntheticOptions = {}): { train: Dataset; test: Dataset } {
  const seed = options.seed ?? 0;
  const trainSize = options.trainSize ?? 5000;
  const testSize = options.testSize ?? 1000;
  const size = options.imageSize ?? 32;
  const k = options.numClasses ?? 10;
  const noise = options.noise ?? 0.08;
  if (!Number.isInteger(k) || k < 2 || k > SYNTHETIC_CLASSES.length) throw new Error(`syntheticDataset: numClasses must be 2..${SYNTHETIC_CLASSES.length}, got ${k}`);
  if (!Number.isInteger(size) || size < 8) throw new Error(`syntheticDataset: imageSize must be an integer ≥ 8, got ${size}`);
  for (const [what, v] of [['trainSize', trainSize], ['testSize', testSize]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`syntheticDataset: ${what} must be an integer ≥ 0, got ${v}`);
  }
  if (!(noise >= 0)) throw new Error(`syntheticDataset: noise must be ≥ 0, got ${noise}`);
  // separate streams, so the test set does not change when the train size does
  const train = generate(new Rng(seed * 2 + 1), trainSize, k, size, noise, `synthetic${size}-train`);
  const test = generate(new Rng(seed * 2 + 2), testSize, k, size, noise, `synthetic${size}-test`);
  const norm = trainSize > 0 ? computeNormalization(train.images, train.shape) : train.normalization;
  norm.std.forEach((s, i) => {
    if (!(s > 0)) (norm.std as number[])[i] = 1;
  });
  train.normalization = norm;
  test.normalization = norm;
  return { train, test };
}
