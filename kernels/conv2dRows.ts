// The "row" convolution of the texture path (software adapters with subgroups of 8
// lanes: lavapipe): forward and stride-1 grad input of 1×1 and 3×3 "same"
// convolutions at stride 1 or 2, reading the NCHW activation as it is, without the
// NHWC4 repack of kernels/conv2dTexture.ts.
//
//   input      the NCHW buffer copied byte for byte into an rgba32float texture
//              (16 texels = 64 floats per texture row, one layer per image): a
//              texel is 4 neighbouring pixels of one channel. The copy engine does
//              this at memcpy speed; the repack kernel it replaces is bound by
//              texture stores (2-3 GB/s) and was ~30% of a standalone conv.
//   lanes      one lane per 4 neighbouring output pixels of a row (so an output row
//              of 8, 16 or 32 pixels is 2, 4 or 8 lanes of one subgroup); per input
//              channel and filter row a lane loads the stride's texels and takes the
//              pixel left of them (padding column) from its left neighbour by a
//              subgroup shuffle, the one right of them from its right neighbour.
//   weights    texel (c·KH + ky, m) = the KW taps of filter row ky for input channel
//              c and output channel m; one lane loads each of TM rows and every lane
//              reads it by subgroupShuffle (as in the repacked correlation).
//   block      TM output channels × 4 pixels per lane, accumulators as vec4 over the
//              4 pixels, each written once per input channel (llvmpipe blends every
//              loop-carried write), stored as vec4 into the NCHW output.
//
// Per input channel: KH·S image texel loads, KH·TM/8 weight loads, KH·TM weight
// shuffles, 4·KH·KW·TM multiply-adds (3×3, TM 16, stride 1: 9 loads per 576,
// against 18 per 768 for the repacked correlation).
//
// Grad input at stride 1 is the same kernel over dY with the weights flipped and
// transposed (a "same" convolution's full correlation has the same padding).
import type { Device } from '../engine/device.ts';
import type { Tensor } from '../engine/tensor.ts';
import { UniformWriter } from './common.ts';
import type { ConvGeometry } from './conv2d.ts';

const TM = 16;
const XYZW = ['x', 'y', 'z', 'w'];

/** Whether the row kernel computes this convolution's forward (flip false) or stride-1 grad input (flip true). */
export function rowConvFits(device: Device, g: ConvGeometry, flip: boolean): boolean {
  const k = g.kh;
  const s = g.strideH;
  if (g.kw !== k || g.strideW !== s || (k !== 1 && k !== 3) || g.padH !== (k - 1) / 2 || g.padW !== g.padH) return false;
  if (s !== 1 && (s !== 2 || flip)) return false;
  if (g.h % s !== 0 || g.w % (4 * s) !== 0 || g.ho !== g.h / s || g.wo !== g.w / s) return false;
  // the reading side: X (forward) or dY (grad input); the written side's rows of 4-pixel lanes
  const [c, h, w, outW] = flip ? [g.cout, g.ho, g.wo, g.w] : [g.cin, g.h, g.w, g.wo];
  const lanesPerRow = outW / 4;
  if (![1, 2, 4, 8].includes(lanesPerRow)) return false;
  const l = device.limits;
  return (
    (c * h * w) % 64 === 0 &&
    (c * h * w) / 64 <= l.maxTextureDimension2D &&
    c * k <= l.maxTextureDimension2D &&
    g.batch <= l.maxTextureArrayLayers &&
    Math.ceil((g.batch * (flip ? g.h : g.ho) * lanesPerRow) / 64) <= l.maxComputeWorkgroupsPerDimension
  );
}

function rowConvSource(K: number, S: number, hasBias: boolean): string {
  const P = (K - 1) / 2;
  const decl: string[] = [];
  for (let m = 0; m < TM; m++) decl.push(`var a${m} = vec4<f32>();`);
  const body: string[] = [];
  const terms: string[][] = Array.from({ length: TM }, () => []);
  for (let ky = 0; ky < K; ky++) {
    body.push(`let iy${ky} = i32(oy * ${S}u + ${ky}u) - ${P};`);
    body.push(`let t${ky} = (ci * p.h + u32(clamp(iy${ky}, 0, i32(p.h) - 1))) * p.w4 + xl * ${S}u;`);
    body.push(`let ok${ky} = iy${ky} >= 0 && iy${ky} < i32(p.h);`);
    for (let j = 0; j < S; j++) body.push(`let x${ky}_${j} = select(vec4<f32>(), textureLoad(X, vec2<u32>((t${ky} + ${j}u) % 16u, (t${ky} + ${j}u) / 16u), n), ok${ky});`);
    // input pixel i (relative to the lane's first texel) for i in [-P, 4S + P)
    const inp = (i: number): string => {
      if (i < 0) return `l${ky}`;
      if (i >= 4 * S) return `r${ky}`;
      return `x${ky}_${i >> 2}.${XYZW[i & 3]}`;
    };
    const used = new Set<number>();
    for (let kx = 0; kx < K; kx++) for (let px = 0; px < 4; px++) used.add(px * S - P + kx);
    if ([...used].some((i) => i < 0)) body.push(`let l${ky} = select(0.0, subgroupShuffle(x${ky}_${S - 1}.w, (sg + 7u) & 7u), hasLeft);`);
    if ([...used].some((i) => i >= 4 * S)) body.push(`let r${ky} = select(0.0, subgroupShuffle(x${ky}_0.x, (sg + 1u) & 7u), hasRight);`);
    for (let kx = 0; kx < K; kx++) body.push(`let v${ky}_${kx} = vec4<f32>(${[0, 1, 2, 3].map((px) => inp(px * S - P + kx)).join(', ')});`);
    for (let g = 0; g < TM / 8; g++) body.push(`let w${ky}_${g} = textureLoad(Wt, vec2<u32>(ci * ${K}u + ${ky}u, m0 + ${8 * g}u + sg), 0u);`);
    for (let m = 0; m < TM; m++) {
      body.push(`let s${ky}_${m} = subgroupShuffle(w${ky}_${m >> 3}, ${m & 7}u);`);
      for (let kx = 0; kx < K; kx++) terms[m]!.push(`s${ky}_${m}.${XYZW[kx]}, v${ky}_${kx}`);
    }
  }
  for (let m = 0; m < TM; m++) {
    const e = terms[m]!.reduce((acc, t) => {
      const [s, v] = t.split(', ');
      return `fma(vec4<f32>(${s}), ${v}, ${acc})`;
    }, `a${m}`);
    body.push(`a${m} = ${e};`);
  }
  const stores = Array.from(
    { length: TM },
    (_, m) => `if (m0 + ${m}u < p.m) { Y[((n * p.m + m0 + ${m}u) * p.ho + oy) * p.lanesPerRow + xl] = a${m}${hasBias ? ` + bias[m0 + ${m}u]` : ''}; }`,
  );
  return /* wgsl */ `enable subgroups;
struct P { c: u32, h: u32, w4: u32, ho: u32, lanesPerRow: u32, m: u32, lanes: u32, _p: u32 }
@group(0) @binding(0) var X: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var Wt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: P;
${hasBias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg: u32) {
  let m0 = wid.y * ${TM}u;
  // lanes past the last pixel repeat it (they take part in the shuffles) and store nothing
  let lane = wid.x * 64u + li;
  let g = min(lane, p.lanes - 1u);
  let xl = g % p.lanesPerRow;
  let row = g / p.lanesPerRow;
  let oy = row % p.ho;
  let n = row / p.ho;
  let hasLeft = xl > 0u;
  let hasRight = xl + 1u < p.lanesPerRow;
  ${decl.join(' ')}
  for (var ci = 0u; ci < p.c; ci++) {
    ${body.join('\n    ')}
  }
  if (lane < p.lanes) {
    ${stores.join('\n    ')}
  }
}`;
}

const packWeightSource = /* wgsl */ `
struct P { rows: u32, c: u32, k: u32, flip: u32, tw: u32, th: u32, cout: u32, cin: u32 }
@group(0) @binding(0) var<storage, read> W: array<f32>;
@group(0) @binding(1) var T: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= p.tw * p.th) { return; }
  let tx = gid.x % p.tw;
  let m = gid.x / p.tw;
  let c = tx / p.k;
  let ky = tx % p.k;
  var v = vec4<f32>();
  if (m < p.rows) {
    for (var kx = 0u; kx < p.k; kx++) {
      if (p.flip == 0u) {
        // forward: W[m, c, ky, kx]
        v[kx] = W[((m * p.cin + c) * p.k + ky) * p.k + kx];
      } else {
        // grad input: output channel m is the conv's input channel, c its output channel; rotated 180°
        v[kx] = W[((c * p.cin + m) * p.k + (p.k - 1u - ky)) * p.k + (p.k - 1u - kx)];
      }
    }
  }
  textureStore(T, vec2<u32>(tx, m), 0u, v);
}`;

/**
 * Records Y = conv2d(X, W) (+ bias), or with `flip` dX = grad input of a stride-1
 * convolution from dY; needs rowConvFits(device, g, flip).
 */
export function rowConv(device: Device, input: Tensor, weight: Tensor, bias: Tensor | undefined, out: Tensor, g: ConvGeometry, flip: boolean): void {
  const K = g.kh;
  const S = flip ? 1 : g.strideH;
  const [c, h, w, m, outH, outW] = flip ? [g.cout, g.ho, g.wo, g.cin, g.h, g.w] : [g.cin, g.h, g.w, g.cout, g.ho, g.wo];
  const rows = (c * h * w) / 64;
  const raw = device.acquireTexture(16, rows, g.batch);
  device.copyToTexture(input.buffer, raw, 16, rows, g.batch);
  const mPad = Math.ceil(m / TM) * TM;
  const wt = device.acquireTexture(c * K, mPad, 1);
  const packPipeline = device.pipeline('conv2d rows:packWeight', 'conv2d rows pack (weight)', () => packWeightSource);
  const pu = device.uniforms(new UniformWriter().u32(m, c, K, flip ? 1 : 0, c * K, mPad, g.cout, g.cin).bytes());
  device.dispatch(packPipeline, [weight.buffer, wt.view, pu], [Math.ceil((c * K * mPad) / 64), 1, 1]);
  const hasBias = bias !== undefined;
  const pipeline = device.pipeline(`conv2d rows:${K}:${S}:${hasBias}`, `conv2d rows (${K}×${K}, stride ${S}${hasBias ? ', +bias' : ''})`, () => rowConvSource(K, S, hasBias));
  const lanesPerRow = outW / 4;
  const lanes = g.batch * outH * lanesPerRow;
  const u = device.uniforms(new UniformWriter().u32(c, h, w / 4, outH, lanesPerRow, m, lanes, 0).bytes());
  const bindings = [raw.view, wt.view, out.buffer, u];
  if (bias) bindings.push(bias.buffer);
  device.dispatch(pipeline, bindings, [Math.ceil(lanes / 64), mPad / TM, 1]);
  device.releaseTexture(raw);
  device.releaseTexture(wt);
}
