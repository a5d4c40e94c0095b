// Batch augmentation in one kernel: uint8 NCHW pixels, packed four to a u32 so
// the upload is a quarter of an f32 batch, become the normalised f32 NCHW batch,
// with each image's random crop, horizontal flip and cutout applied on the way.
// The randomness is decided on the host (seeded) and arrives as five i32 per
// image, so a run is reproducible and the CPU reference can replay it exactly.
//
// One thread per output element (n, c, y, x); 1-D grid folded into y.
//   params[n] = (dy, dx, flip, cy, cx)
//   cutout (DeVries & Taylor, in output coordinates, after normalisation):
//     rows [cy − half, cy + half) × cols [cx − half, cx + half), clipped to the image, become 0.0
//   otherwise: xf = flip ? W−1−x : x;  (sy, sx) = (y + dy, xf + dx)
//     pixel = src[n, c, sy, sx] inside the image, 0 outside (the zero padding of RandomCrop)
//     out   = lut[c·256 + pixel]   (lut = (v/255 − mean_c)/std_c, precomputed in f32 on the host)
// That is torchvision's RandomCrop(H, padding=p) then RandomHorizontalFlip, ToTensor,
// Normalize, then Cutout. The lookup table makes the result bit-identical to a
// CPU replay using the same table. Eval mode is params all 0 and half = 0.
import type { Device } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, grid1d } from './common.ts';

export const AUGMENT_PARAMS_PER_IMAGE = 5;

const augmentSource = /* wgsl */ `
const WG = ${WG}u;
struct Params { n: u32, C: u32, H: u32, W: u32, half: i32 }
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> aug: array<i32>;
@group(0) @binding(2) var<storage, read> lut: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
  let x = i32(i % p.W);
  let y = i32((i / p.W) % p.H);
  let c = (i / (p.W * p.H)) % p.C;
  let img = i / (p.W * p.H * p.C);
  let a = img * ${AUGMENT_PARAMS_PER_IMAGE}u;
  let cy = aug[a + 3u];
  let cx = aug[a + 4u];
  if (y >= cy - p.half && y < cy + p.half && x >= cx - p.half && x < cx + p.half) {
    out[i] = 0.0;
    return;
  }
  let xf = select(x, i32(p.W) - 1 - x, aug[a + 2u] != 0);
  let sy = y + aug[a];
  let sx = xf + aug[a + 1u];
  var v = 0u;
  if (sy >= 0 && sy < i32(p.H) && sx >= 0 && sx < i32(p.W)) {
    let b = ((img * p.C + c) * p.H + u32(sy)) * p.W + u32(sx);
    v = (src[b / 4u] >> ((b % 4u) * 8u)) & 0xffu;
  }
  out[i] = lut[c * 256u + v];
}`;

/**
 * out[N,C,H,W] (f32) ← augment(src packed bytes, params i32[N·5], lut f32[C·256]).
 * `half` is half the cutout side (0: no cutout).
 */
export function augmentKernel(device: Device, src: Operand, params: Operand, lut: Operand, out: Operand, half: number): void {
  const [n, c, h, w] = out.shape as [number, number, number, number];
  if (out.shape.length !== 4) throw new Error(`augment: output must be [N, C, H, W], got rank ${out.shape.length}`);
  if (src.size * 4 < n * c * h * w) throw new Error(`augment: ${src.size} packed words hold fewer than the ${n * c * h * w} pixels of the output`);
  if (params.size < n * AUGMENT_PARAMS_PER_IMAGE) throw new Error(`augment: ${params.size} params for ${n} images (need ${AUGMENT_PARAMS_PER_IMAGE} each)`);
  if (lut.size < c * 256) throw new Error(`augment: lookup table of ${lut.size} entries for ${c} channels (need ${c * 256})`);
  const pipeline = device.pipeline('augment', 'augment (crop, flip, cutout, normalise)', () => augmentSource);
  const u = device.uniforms(new UniformWriter().u32(out.size, c, h, w).i32(half).bytes());
  device.dispatch(pipeline, [src.buffer, params.buffer, lut.buffer, out.buffer, u], grid1d(out.size));
}
