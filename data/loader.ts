// Mini-batches over a Dataset: a seeded permutation per epoch, batches of N in
// that order (the last one short, or dropped with `dropLast`), and a seeded Rng
// per batch for augmentation.
//
// Nothing random is carried from one epoch or batch to the next: epoch e's order
// comes from an Rng seeded by hash(seed, e), batch b's augmentation Rng from
// hash(seed, e, b). So the whole stream is a function of (seed, epoch,
// position), and the saved state is just those numbers (plus the settings, to
// refuse a state from another configuration): a resumed run sees exactly the
// batches, and the augmentations, the uninterrupted run would have seen.
import { Rng } from '../engine/random.ts';
import { type Dataset, datasetSize, imageSize } from './dataset.ts';

export interface LoaderOptions {
  batchSize: number;
  seed: number;
  /** a new random order every epoch (default true); false: dataset order */
  shuffle?: boolean;
  /** drop the last, short batch of each epoch (default false) */
  dropLast?: boolean;
}

/** Everything needed to resume: JSON-serialisable. */
export interface LoaderState {
  seed: number;
  epoch: number;
  /** index in the epoch's order of the next image to be served */
  position: number;
  /** settings the state is only valid for */
  size: number;
  batchSize: number;
  shuffle: boolean;
  dropLast: boolean;
}

export interface Batch {
  /** B×C×H×W pixels */
  images: Uint8Array;
  labels: Int32Array;
  /** the dataset indices of the images */
  indices: Int32Array;
  epoch: number;
  /** batch number within the epoch */
  index: number;
  /** whether this is the epoch's last batch */
  last: boolean;
  /** seeded from (seed, epoch, index): draw this batch's augmentation parameters from it */
  rng: Rng;
}

/** A 32-bit hash of integers (murmur3's finaliser over a running mix). */
export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    let k = Math.imul(p >>> 0, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h = Math.imul(((h ^ k) << 13) | ((h ^ k) >>> 19), 5) + 0xe6546b64;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const ORDER_TAG = 1;
const AUGMENT_TAG = 2;

/** The order of epoch `epoch`: a permutation of 0..n−1 (identity without shuffling). */
export function epochOrder(n: number, seed: number, epoch: number, shuffle = true): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  return shuffle ? new Rng(mixSeed(seed, ORDER_TAG, epoch)).shuffle(order) : order;
}

/** The augmentation Rng of batch `index` of epoch `epoch`. */
export function batchRng(seed: number, epoch: number, index: number): Rng {
  return new Rng(mixSeed(seed, AUGMENT_TAG, epoch, index));
}

export class BatchLoader {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  private epochNum = 0;
  private pos = 0;
  private cachedOrder: { epoch: number; order: Int32Array } | null = null;

  constructor(dataset: Dataset, options: LoaderOptions) {
    const n = datasetSize(dataset);
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
      throw new Error(`BatchLoader: batchSize must be an integer ≥ 1, got ${options.batchSize}`);
    }
    if (!Number.isInteger(options.seed)) throw new Error(`BatchLoader: seed must be an integer, got ${options.seed}`);
    this.dataset = dataset;
    this.batchSize = options.batchSize;
    this.seed = options.seed;
    this.shuffle = options.shuffle ?? true;
    this.dropLast = options.dropLast ?? false;
    if (n === 0 || (this.dropLast && n < this.batchSize)) {
      throw new Error(`BatchLoader: dataset '${dataset.name}' has ${n} images, too few for one batch of ${this.batchSize}${this.dropLast ? ' with dropLast' : ''}`);
    }
  }

  get size(): number {
    return datasetSize(this.dataset);
  }

  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.size / this.batchSize) : Math.ceil(this.size / this.batchSize);
  }

  /** The epoch the next batch belongs to (0-based). */
  get epoch(): number {
    return this.epochNum;
  }

  /** Images of the current epoch already served. */
  get position(): number {
    return this.pos;
  }

  order(epoch: number): Int32Array {
    if (this.cachedOrder?.epoch !== epoch) this.cachedOrder = { epoch, order: epochOrder(this.size, this.seed, epoch, this.shuffle) };
    return this.cachedOrder.order;
  }

  /** The next batch; after an epoch's last batch the next epoch begins. */
  next(): Batch {
    const order = this.order(this.epochNum);
    const n = Math.min(this.batchSize, this.size - this.pos);
    const indices = order.slice(this.pos, this.pos + n);
    const per = imageSize(this.dataset);
    const images = new Uint8Array(n * per);
    const labels = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const j = indices[i]!;
      images.set(this.dataset.images.subarray(j * per, (j + 1) * per), i * per);
      labels[i] = this.dataset.labels[j]!;
    }
    const index = this.pos / this.batchSize;
    const batch: Batch = {
      images, labels, indices, epoch: this.epochNum, index, last: index === this.batchesPerEpoch - 1,
      rng: batchRng(this.seed, this.epochNum, index),
    };
    this.pos += n;
    if (batch.last) {
      this.epochNum++;
      this.pos = 0;
    }
    return batch;
  }

  /** The remaining batches of the current epoch. */
  *epochBatches(): Generator<Batch> {
    const epoch = this.epochNum;
    while (this.epochNum === epoch) yield this.next();
  }

  state(): LoaderState {
    return {
      seed: this.seed, epoch: this.epochNum, position: this.pos,
      size: this.size, batchSize: this.batchSize, shuffle: this.shuffle, dropLast: this.dropLast,
    };
  }

  /** Continues from a saved state; refuses one made for another dataset size or other settings. */
  restore(s: LoaderState): void {
    const mine = this.state();
    for (const key of ['seed', 'size', 'batchSize', 'shuffle', 'dropLast'] as const) {
      if (s[key] !== mine[key]) throw new Error(`BatchLoader.restore: the state has ${key} = ${String(s[key])}, this loader ${String(mine[key])}`);
    }
    if (!Number.isInteger(s.epoch) || s.epoch < 0) throw new Error(`BatchLoader.restore: bad epoch ${s.epoch}`);
    if (!Number.isInteger(s.position) || s.position < 0 || s.position % this.batchSize !== 0 || s.position >= this.batchesPerEpoch * this.batchSize) {
      throw new Error(`BatchLoader.restore: bad position ${s.position} (a multiple of ${this.batchSize} below ${this.batchesPerEpoch * this.batchSize})`);
    }
    this.epochNum = s.epoch;
    this.pos = s.position;
  }
}
