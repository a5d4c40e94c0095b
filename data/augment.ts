// Training-time augmentation of uint8 batches into normalised f32 tensors on the
// GPU (kernels/augment.ts), its per-image random parameters drawn from a seeded
// host Rng, and a float64 CPU reference of the same transform.
//
// Train: torchvision's RandomCrop(H, padding) → RandomHorizontalFlip → ToTensor →
// Normalize → Cutout(length) of DeVries & Taylor (2017). Eval: Normalize only.
import { Rng } from '../engine/random.ts';
import type { Device } from '../gpu/device.ts';
import { type Tensor, empty, keep } from '../engine/tensor.ts';
import { AUGMENT_PARAMS_PER_IMAGE, augmentKernel } from '../kernels/augment.ts';
import type { Normalization } from './dataset.ts';

export { AUGMENT_PARAMS_PER_IMAGE };

export interface AugmentOptions {
  normalization: Normalization;
  /** random-crop zero padding in pixels (default 4; 0: no crop) */
  padding?: number;
  /** random horizontal flip (default true) */
  flip?: boolean;
  /** side of the cutout square in pixels (default 0: none; DeVries & Taylor use 16 on CIFAR-10, 8 on CIFAR-100) */
  cutout?: number;
}

export type ImageShape = readonly [number, number, number];

/**
 * Five i32 per image (dy, dx, flip, cy, cx): crop offsets in [−padding, padding],
 * flip 0/1 with probability ½, cutout centre uniform over the image (as DeVries
 * & Taylor: the square may hang over the border). Drawn in that order per image.
 */
export function sampleAugmentParams(rng: Rng, n: number, shape: ImageShape, options: AugmentOptions): Int32Array {
  const [, h, w] = shape;
  const pad = options.padding ?? 4;
  const flip = options.flip ?? true;
  const cutout = options.cutout ?? 0;
  const out = new Int32Array(n * AUGMENT_PARAMS_PER_IMAGE);
  for (let i = 0; i < n; i++) {
    const a = i * AUGMENT_PARAMS_PER_IMAGE;
    out[a] = pad > 0 ? rng.int(2 * pad + 1) - pad : 0;
    out[a + 1] = pad > 0 ? rng.int(2 * pad + 1) - pad : 0;
    out[a + 2] = flip && rng.next() < 0.5 ? 1 : 0;
    out[a + 3] = cutout > 0 ? rng.int(h) : 0;
    out[a + 4] = cutout > 0 ? rng.int(w) : 0;
  }
  return out;
}

/** (v/255 − mean_c)/std_c for every byte value v, channel-major, rounded once to f32. */
export function normalizationTable(norm: Normalization, channels: number): Float32Array {
  if (norm.mean.length !== channels || norm.std.length !== channels) {
    throw new Error(`normalisation constants have ${norm.mean.length} means and ${norm.std.length} stds for ${channels} channels`);
  }
  const lut = new Float32Array(channels * 256);
  for (let c = 0; c < channels; c++) {
    if (!(norm.std[c]! > 0)) throw new Error(`normalisation: std of channel ${c} must be > 0, got ${norm.std[c]}`);
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - norm.mean[c]!) / norm.std[c]!;
  }
  return lut;
}

/**
 * The transform in float64 on the CPU, replaying `params` (null: eval mode).
 * Independent of the kernel's lookup table: Math.fround of each value equals the GPU's output.
 */
export function augmentReference(
  images: Uint8Array,
  shape: ImageShape,
  params: Int32Array | null,
  norm: Normalization,
  cutout = 0,
): Float64Array {
  const [c, h, w] = shape;
  const per = c * h * w;
  const n = images.length / per;
  const out = new Float64Array(n * per);
  const half = params ? Math.floor(cutout / 2) : 0;
  for (let i = 0; i < n; i++) {
    const a = i * AUGMENT_PARAMS_PER_IMAGE;
    const [dy, dx, flip, cy, cx] = params ? [params[a]!, params[a + 1]!, params[a + 2]!, params[a + 3]!, params[a + 4]!] : [0, 0, 0, 0, 0];
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const o = ((i * c + ch) * h + y) * w + x;
          // torchvision order: crop from the zero-padded image, flip the crop, normalise, then cut out
          const xf = flip ? w - 1 - x : x;
          const sy = y + dy;
          const sx = xf + dx;
          const pixel = sy >= 0 && sy < h && sx >= 0 && sx < w ? images[((i * c + ch) * h + sy) * w + sx]! : 0;
          const cut = y >= Math.max(0, cy - half) && y < Math.min(h, cy + half) && x >= Math.max(0, cx - half) && x < Math.min(w, cx + half);
          out[o] = cut ? 0 : (pixel / 255 - norm.mean[ch]!) / norm.std[ch]!;
        }
      }
    }
  }
  return out;
}

/** Packs bytes four to a u32 word (little-endian, as the kernel unpacks them), zero-padded. */
export function packBytes(bytes: Uint8Array): Uint32Array {
  if (bytes.byteOffset % 4 === 0 && bytes.byteLength % 4 === 0) {
    return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  }
  const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  padded.set(bytes);
  return new Uint32Array(padded.buffer);
}

/** Uploads uint8 batches and returns them augmented (train) or just normalised (eval) as f32 [N, C, H, W] tensors. */
export class Augmenter {
  readonly device: Device;
  readonly shape: ImageShape;
  readonly options: Required<AugmentOptions>;
  private lut: Tensor;

  constructor(device: Device, shape: ImageShape, options: AugmentOptions) {
    this.device = device;
    this.shape = shape;
    this.options = { padding: 4, flip: true, cutout: 0, ...options };
    const { padding, cutout } = this.options;
    if (!Number.isInteger(padding) || padding < 0) throw new Error(`Augmenter: padding must be an integer ≥ 0, got ${padding}`);
    if (!Number.isInteger(cutout) || cutout < 0) throw new Error(`Augmenter: cutout must be an integer ≥ 0, got ${cutout}`);
    const table = normalizationTable(options.normalization, shape[0]);
    // the table outlives any tidy scope it is created in
    this.lut = keep(empty(device, [table.length], 'f32', 'augment lut'));
    device.write(this.lut.buffer, table);
  }

  /** Random parameters for `n` images from `rng` (the loader's per-batch Rng). */
  sample(rng: Rng, n: number): Int32Array {
    return sampleAugmentParams(rng, n, this.shape, this.options);
  }

  /** Applies `params` (null: eval, normalisation only) to `images` (N×C×H×W bytes). */
  apply(images: Uint8Array, params: Int32Array | null): Tensor {
    const [c, h, w] = this.shape;
    const per = c * h * w;
    if (images.length === 0 || images.length % per !== 0) {
      throw new Error(`Augmenter: ${images.length} bytes is not a whole, non-zero number of [${this.shape.join(', ')}] images`);
    }
    const n = images.length / per;
    const p = params ?? new Int32Array(n * AUGMENT_PARAMS_PER_IMAGE);
    if (p.length !== n * AUGMENT_PARAMS_PER_IMAGE) throw new Error(`Augmenter: ${p.length} params for ${n} images`);
    const packed = packBytes(images);
    const src = empty(this.device, [packed.length], 'i32', 'augment input');
    const aug = empty(this.device, [p.length], 'i32', 'augment params');
    this.device.write(src.buffer, packed);
    this.device.write(aug.buffer, p);
    const out = empty(this.device, [n, c, h, w], 'f32', params ? 'augment' : 'normalize');
    augmentKernel(this.device, src, aug, this.lut, out, params ? Math.floor(this.options.cutout / 2) : 0);
    src.dispose(); // safe: the queue orders any reuse after this dispatch
    aug.dispose();
    return out;
  }

  /** Augmented batch with parameters drawn from `rng`. */
  train(images: Uint8Array, rng: Rng): Tensor {
    return this.apply(images, this.sample(rng, images.length / (this.shape[0] * this.shape[1] * this.shape[2])));
  }

  /** Normalised batch, no augmentation. */
  eval(images: Uint8Array): Tensor {
    return this.apply(images, null);
  }

  dispose(): void {
    this.lut.dispose();
  }
}
