// The in-memory image dataset every loader produces: uint8 pixels in NCHW
// (exactly CIFAR's record layout, so a batch uploads as bytes and is
// normalised on the GPU), int32 labels, and what is needed to interpret them.
import { Rng } from '../engine/random.ts';

/** Per-channel mean and standard deviation of pixel values scaled to [0, 1]. */
export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

export interface Dataset {
  name: string;
  /** N×C×H×W pixels, 0..255 */
  images: Uint8Array;
  /** N labels in 0..numClasses−1 */
  labels: Int32Array;
  numClasses: number;
  classNames: readonly string[];
  /** [C, H, W] of one image */
  shape: readonly [number, number, number];
  /** the constants the input is normalised with (per channel, on the [0, 1] scale) */
  normalization: Normalization;
  /** CIFAR-100's 20 superclass labels, beside the 100 fine `labels` */
  coarseLabels?: Int32Array;
  coarseClassNames?: readonly string[];
}

export const datasetSize = (ds: Dataset): number => ds.labels.length;
export const imageSize = (ds: Dataset): number => ds.shape[0] * ds.shape[1] * ds.shape[2];

/** Throws unless sizes agree and every label is in range. */
export function checkDataset(ds: Dataset): void {
  const n = ds.labels.length;
  const per = imageSize(ds);
  if (ds.images.length !== n * per) {
    throw new Error(`dataset '${ds.name}': ${ds.images.length} pixel bytes for ${n} images of [${ds.shape.join(', ')}] (expected ${n * per})`);
  }
  if (ds.classNames.length !== ds.numClasses) {
    throw new Error(`dataset '${ds.name}': ${ds.classNames.length} class names for ${ds.numClasses} classes`);
  }
  for (let i = 0; i < n; i++) {
    const l = ds.labels[i]!;
    if (l < 0 || l >= ds.numClasses) throw new Error(`dataset '${ds.name}': image ${i} has label ${l}, outside 0..${ds.numClasses - 1}`);
  }
  const c = ds.shape[0];
  if (ds.normalization.mean.length !== c || ds.normalization.std.length !== c) {
    throw new Error(`dataset '${ds.name}': normalisation constants must have ${c} entries (one per channel)`);
  }
}

/** Number of images of each class. */
export function classCounts(ds: Dataset): number[] {
  const counts = new Array<number>(ds.numClasses).fill(0);
  for (const l of ds.labels) counts[l]!++;
  return counts;
}

/** The images at `indices`, in that order (a copy). */
function gather(ds: Dataset, indices: ArrayLike<number>, name: string): Dataset {
  const per = imageSize(ds);
  const n = datasetSize(ds);
  const images = new Uint8Array(indices.length * per);
  const labels = new Int32Array(indices.length);
  const coarse = ds.coarseLabels ? new Int32Array(indices.length) : undefined;
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i]!;
    if (!Number.isInteger(j) || j < 0 || j >= n) throw new Error(`subset of '${ds.name}': index ${j} is outside 0..${n - 1}`);
    images.set(ds.images.subarray(j * per, (j + 1) * per), i * per);
    labels[i] = ds.labels[j]!;
    if (coarse) coarse[i] = ds.coarseLabels![j]!;
  }
  const out: Dataset = { ...ds, name, images, labels };
  if (coarse) out.coarseLabels = coarse;
  return out;
}

/** The first `count` images, or the images at `indices` (in that order). */
export function subset(ds: Dataset, countOrIndices: number | ArrayLike<number>, name?: string): Dataset {
  if (typeof countOrIndices === 'number') {
    const n = datasetSize(ds);
    if (!Number.isInteger(countOrIndices) || countOrIndices < 0 || countOrIndices > n) {
      throw new Error(`subset of '${ds.name}': count ${countOrIndices} is not an integer in 0..${n}`);
    }
    return gather(ds, Int32Array.from({ length: countOrIndices }, (_, i) => i), name ?? `${ds.name}[:${countOrIndices}]`);
  }
  return gather(ds, countOrIndices, name ?? `${ds.name}[${countOrIndices.length} selected]`);
}

export interface SplitOptions {
  /** keep each class's share equal in both parts (default true); false: a plain random sample */
  stratified?: boolean;
}

/**
 * Holds out a validation set: `fractionOrCount` < 1 is a fraction of the
 * images, otherwise a count. Stratified by default: each class gives its
 * proportional share (largest-remainder rounding, so the total is exact), the
 * members drawn by a seeded shuffle. Both parts keep the original order; the
 * same (dataset, fractionOrCount, seed) always gives the same split.
 */
export function splitValidation(
  ds: Dataset,
  fractionOrCount: number,
  seed: number,
  options: SplitOptions = {},
): { train: Dataset; validation: Dataset } {
  const n = datasetSize(ds);
  const count = fractionOrCount < 1 ? Math.round(n * fractionOrCount) : fractionOrCount;
  if (!(fractionOrCount > 0) || !Number.isInteger(count) || count < 1 || count > n) {
    throw new Error(`splitValidation of '${ds.name}': ${fractionOrCount} is neither a fraction in (0, 1) nor a count in 1..${n}`);
  }
  const rng = new Rng(seed);
  const chosen = new Uint8Array(n);
  if (options.stratified ?? true) {
    const byClass: number[][] = Array.from({ length: ds.numClasses }, () => []);
    ds.labels.forEach((l, i) => byClass[l]!.push(i));
    const exact = byClass.map((m) => (count * m.length) / n);
    const quota = exact.map(Math.floor);
    let left = count - quota.reduce((a, b) => a + b, 0);
    const order = exact.map((e, c) => ({ c, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.c - b.c);
    for (const { c } of order) {
      if (left === 0) break;
      if (quota[c]! < byClass[c]!.length) {
        quota[c]!++;
        left--;
      }
    }
    byClass.forEach((members, c) => {
      const pick = rng.shuffle(Int32Array.from(members));
      for (let k = 0; k < quota[c]!; k++) chosen[pick[k]!] = 1;
    });
  } else {
    const perm = rng.shuffle(Int32Array.from({ length: n }, (_, i) => i));
    for (let k = 0; k < count; k++) chosen[perm[k]!] = 1;
  }
  const val: number[] = [];
  const train: number[] = [];
  for (let i = 0; i < n; i++) (chosen[i] ? val : train).push(i);
  return { train: gather(ds, train, `${ds.name}-train`), validation: gather(ds, val, `${ds.name}-validation`) };
}

/** Per-channel mean and standard deviation (population) of the pixels, on the [0, 1] scale. */
export function computeNormalization(images: Uint8Array, shape: readonly [number, number, number]): Normalization {
  const [c, h, w] = shape;
  const plane = h * w;
  const n = images.length / (c * plane);
  const mean: number[] = [];
  const std: number[] = [];
  for (let ch = 0; ch < c; ch++) {
    const hist = new Float64Array(256);
    for (let i = 0; i < n; i++) {
      const base = (i * c + ch) * plane;
      for (let p = 0; p < plane; p++) hist[images[base + p]!]!++;
    }
    let s = 0;
    let s2 = 0;
    for (let v = 0; v < 256; v++) {
      s += hist[v]! * (v / 255);
      s2 += hist[v]! * (v / 255) ** 2;
    }
    const count = n * plane;
    const m = s / count;
    mean.push(m);
    std.push(Math.sqrt(Math.max(s2 / count - m * m, 0)));
  }
  return { mean, std };
}
