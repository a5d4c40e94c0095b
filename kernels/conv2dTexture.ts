// Convolution for software adapters whose SIMD groups are exposed as subgroups
// of 8 lanes (lavapipe/llvmpipe on AVX2): the same three GEMMs as
// kernels/conv2d.ts, laid out for how such an adapter executes a kernel.
//
// Why another path: llvmpipe runs 8 invocations as the 8 lanes of AVX2 vectors
// and turns every buffer or workgroup-memory load into 8 bounds-checked scalar
// loads, 40-200 cycles per vec4 (bench/experiments/lavapipe-loads.ts); a read of
// a read-only storage texture costs about 25. So here:
//   - activations are repacked once per kernel into rgba32float 2-D array textures,
//     NHWC with channels in groups of 4 (texel (x·C4 + c4, y), layer n) and the
//     convolution's zero padding stored as texels, so the inner loops load one
//     texel per 4 channels and never test bounds;
//   - lanes take consecutive output pixels; weights are loaded by one lane per
//     row and handed to all 8 with a subgroup shuffle from that lane (on llvmpipe
//     subgroupShuffle with a constant lane measured a few % faster than
//     subgroupBroadcast, ~3 against ~5 cycles per 8-lane vec4), so a
//     TM-row weight block costs TM/8 loads instead of TM.
// The repacks cost 2-9 ms per activation at batch 128 on lavapipe (about 7% of a
// ResNet-20 step); the textures come from the device's pool.
//
//   forward      lane = output pixel (TN of them, 64 apart), TM output channels;
//                K loop over taps × input channel quads: per step TN + TM/8 texel
//                loads, 4·TM broadcasts, 4·TM·TN multiply-adds.
//   grad input   stride 1: the forward kernel on dY padded by K−1−p with the weight
//                flipped and transposed (a full correlation). Other strides keep
//                kernels/conv2d.ts's phase decomposition.
//   grad weight  each workgroup is one subgroup and owns TM output channels × one
//                input channel quad × one filter row (KW taps); lanes walk disjoint
//                output pixels of a slice of the batch accumulating TM·4·KW sums,
//                which subgroupAdd folds at the end; slices are summed by a second
//                kernel (split-K, deterministic).
//
// The 1×1 and 3×3 "same" convolutions of CIFAR ResNets (forward, grad input, weight
// gradient) take the row kernels of kernels/conv2dRows.ts instead, which read NCHW
// unpacked and run faster; what is here serves every other geometry. Versions
// measured are in BENCHMARKS.md; the buffer kernels remain for GPUs.
import type { AdapterProfile, Device, PooledTexture } from '../gpu/device.ts';
import type { GradWeightBlock } from '../gpu/policy.ts';
import type { Operand } from './operand.ts';
import type { ConvGeometry, ConvPlan } from './convGeometry.ts';
import { UniformWriter, hasSubgroupsOf8, isSoftwareAdapter } from './common.ts';
import { type BnBackwardEpilogue, type InputPrologue, rawActivation, rowConv, rowGradWeight } from './conv2dRows.ts';
import { fill } from './elementwise.ts';


const SUBGROUP = 8;

/** Whether this device can run the texture path at all (subgroups of exactly 8 lanes). */
export function textureConvSupported(device: AdapterProfile): boolean {
  return hasSubgroupsOf8(device);
}

/** Whether conv kernels with geometry g take the texture path on this device. */
export function useTextureConv(device: AdapterProfile, g: ConvGeometry): boolean {
  if (device.policy.conv.path === 'buffer' || device.policy.conv.path === 'large' || !textureConvSupported(device)) return false;
  if (device.policy.conv.path === 'auto' && !isSoftwareAdapter(device)) return false;
  const l = device.limits;
  const c4 = Math.ceil(Math.max(g.cin, g.cout) / 4);
  const maxPad = Math.max(g.padH, g.padW, g.kh - 1, g.kw - 1);
  const grid = l.maxComputeWorkgroupsPerDimension;
  const rows = Math.max(g.cin, g.cout) + 32; // weight rows, padded to at most a 32-row block
  const pixels = g.batch * Math.max(g.h * g.w, g.ho * g.wo);
  return (
    g.batch <= l.maxTextureArrayLayers &&
    g.batch <= grid &&
    (Math.max(g.w, g.wo) + 2 * maxPad) * c4 <= l.maxTextureDimension2D &&
    Math.max(g.h, g.ho) + 2 * maxPad <= l.maxTextureDimension2D &&
    g.kh * g.kw * c4 <= l.maxTextureDimension2D &&
    // 1-D grids of the weight pack, the correlation and the grad-weight blocks
    Math.ceil((g.kh * g.kw * c4 * rows) / 64) <= grid &&
    Math.ceil(pixels / 64) <= grid &&
    Math.ceil(g.cout / 8) * c4 * g.kh <= grid
  );
}

/**
 * A 1×1 convolution with stride s and no padding reads only every s-th pixel: its
 * input is packed subsampled and the convolution run at stride 1 on that (the
 * forward, the weight gradient and the input gradient's one non-empty phase).
 */
function pointwiseStrided(g: ConvGeometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.padH === 0 && g.padW === 0 && (g.strideH > 1 || g.strideW > 1);
}

/** X packed as the forward and the weight gradient read it (padded; subsampled for pointwise strided convs). */
function packInput(device: Device, x: Operand, g: ConvGeometry): PooledTexture {
  return pointwiseStrided(g)
    ? packActivation(device, x, g.cin, g.h, g.w, 0, 0, [g.strideH, g.strideW])
    : packActivation(device, x, g.cin, g.h, g.w, g.padH, g.padW);
}

/** The stride the kernels step over the packed input with (1 once subsampled). */
function inputStride(g: ConvGeometry): [number, number] {
  return pointwiseStrided(g) ? [1, 1] : [g.strideH, g.strideW];
}

/** Grad input takes the texture path where the convolution does (every stride and padding). */
export function useTextureConvGradInput(device: AdapterProfile, g: ConvGeometry): boolean {
  if (!useTextureConv(device, g)) return false;
  const [padH, padW] = gradOutputPadding(g);
  const c4 = Math.ceil(g.cout / 4);
  return (g.wo + 2 * padW) * c4 <= device.limits.maxTextureDimension2D && g.ho + 2 * padH <= device.limits.maxTextureDimension2D;
}

// ------------------------------------------------------------------ repacks

// One invocation per texel on a 3-D grid (texel x, row, image): no flattened
// index to divide, and C4 is a constant so x / C4 is a multiply and shift
// (llvmpipe divides by a runtime value with 8 scalar divisions per vector).
function packActivationSource(c4: number, fullQuads: boolean): string {
  return /* wgsl */ `
struct P { c: u32, h: u32, w: u32, padH: u32, padW: u32, tw: u32, th: u32, w4: u32,
           sh: u32, sw: u32, hs: u32, ws: u32 }
const C4 = ${c4}u;
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var T: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tx = gid.x;
  let ty = gid.y;
  let n = gid.z;
  if (tx >= p.tw) { return; }
  let c0 = (tx % C4) * 4u;
  let ih = i32(ty) - i32(p.padH);
  let iw = i32(tx / C4) - i32(p.padW);
  var v = vec4<f32>();
  // (ih, iw) in the packed image of hs × ws pixels: source pixel (ih·sh, iw·sw)
  if (ih >= 0 && ih < i32(p.hs) && iw >= 0 && iw < i32(p.ws)) {
    let hw = p.h * p.w;
    let base = (n * p.c + c0) * hw + u32(ih) * p.sh * p.w + u32(iw) * p.sw;
${
  fullQuads
    ? '    v = vec4<f32>(X[base], X[base + hw], X[base + 2u * hw], X[base + 3u * hw]);'
    : '    for (var j = 0u; j < 4u; j++) { if (c0 + j < p.c) { v[j] = X[base + j * hw]; } }'
}
  }
  textureStore(T, vec2<u32>(tx, ty), n, v);
}`;
}

// Rows of a multiple of 4 pixels: each invocation reads 4 pixels of 4 channels as
// four vec4 loads (one per channel) and writes their 4 texels; a vec4 load costs
// llvmpipe little more than a scalar one, so this reads 4× fewer times. The
// invocations past the interior write the zero texels of the left and right
// borders; rows in the top and bottom borders are all zeros.
function packActivationVec4Source(c4: number, fullQuads: boolean, padW: number): string {
  const loads = [0, 1, 2, 3]
    .map((j) => (fullQuads || j === 0 ? `let v${j} = X[base + ${j}u * hw4];` : `var v${j} = vec4<f32>(); if (c0 + ${j}u < p.c) { v${j} = X[base + ${j}u * hw4]; }`))
    .join('\n      ');
  return /* wgsl */ `
struct P { c: u32, h: u32, w: u32, padH: u32, padW: u32, tw: u32, th: u32, w4: u32 }
const C4 = ${c4}u;
const PADW = ${padW}u;
@group(0) @binding(0) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(1) var T: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let q = gid.x;
  let ty = gid.y;
  let n = gid.z;
  let interior = p.w4 * C4;
  if (q >= interior + 2u * PADW * C4) { return; }
  if (q >= interior) {
    // a border texel: left (b < PADW·C4) or right
    let b = q - interior;
    let tx = select(b + p.w * C4, b, b < PADW * C4);
    textureStore(T, vec2<u32>(tx, ty), n, vec4<f32>());
    return;
  }
  let c4 = q % C4;
  let px = (q / C4) * 4u; // first of the 4 pixels
  let tx0 = (px + PADW) * C4 + c4;
  let ih = i32(ty) - i32(p.padH);
  if (ih < 0 || ih >= i32(p.h)) {
    for (var i = 0u; i < 4u; i++) { textureStore(T, vec2<u32>(tx0 + i * C4, ty), n, vec4<f32>()); }
    return;
  }
  let c0 = c4 * 4u;
  let hw4 = p.h * p.w4;
  let base = (n * p.c + c0) * hw4 + u32(ih) * p.w4 + px / 4u;
  ${fullQuads ? '' : '// channels past c read as zero (the first of a quad always exists)'}
  ${loads}
  textureStore(T, vec2<u32>(tx0, ty), n, vec4<f32>(v0.x, v1.x, v2.x, v3.x));
  textureStore(T, vec2<u32>(tx0 + C4, ty), n, vec4<f32>(v0.y, v1.y, v2.y, v3.y));
  textureStore(T, vec2<u32>(tx0 + 2u * C4, ty), n, vec4<f32>(v0.z, v1.z, v2.z, v3.z));
  textureStore(T, vec2<u32>(tx0 + 3u * C4, ty), n, vec4<f32>(v0.w, v1.w, v2.w, v3.w));
}`;
}

/**
 * NCHW activations [batch, c, h, w] → texture (w + 2·padW)·⌈c/4⌉ × (h + 2·padH) ×
 * batch, texel (x·C4 + c4, y) of layer n = channels 4·c4 … 4·c4+3 of padded pixel
 * (y, x), zeros in the border and past c. With `subsample` [sh, sw] the image
 * packed is every sh-th row and sw-th column (⌈h/sh⌉ × ⌈w/sw⌉ pixels).
 */
export function packActivation(
  device: Device,
  x: Operand,
  c: number,
  h: number,
  w: number,
  padH: number,
  padW: number,
  subsample: [number, number] = [1, 1],
): PooledTexture {
  const batch = x.size / (c * h * w);
  const c4 = Math.ceil(c / 4);
  const [sh, sw] = subsample;
  const strided = sh > 1 || sw > 1;
  // the packed image: every sh-th row and sw-th column of the source
  const hs = Math.ceil(h / sh);
  const ws = Math.ceil(w / sw);
  const tw = (ws + 2 * padW) * c4;
  const th = hs + 2 * padH;
  const t = device.acquireTexture(tw, th, batch);
  const full = c % 4 === 0;
  const u = device.uniforms(new UniformWriter().u32(c, h, w, padH, padW, tw, th, w / 4, sh, sw, hs, ws).bytes());
  if (w % 4 === 0 && !strided) {
    const pipeline = device.pipeline(`conv2d tex:packActivation4:${c4}:${full}:${padW}`, 'conv2d texture pack (activation, vec4)', () =>
      packActivationVec4Source(c4, full, padW),
    );
    device.dispatch(pipeline, [x.buffer, t.view, u], [Math.ceil(((w / 4) * c4 + 2 * padW * c4) / 64), th, batch]);
  } else {
    const pipeline = device.pipeline(`conv2d tex:packActivation:${c4}:${full}`, 'conv2d texture pack (activation)', () => packActivationSource(c4, full));
    device.dispatch(pipeline, [x.buffer, t.view, u], [Math.ceil(tw / 64), th, batch]);
  }
  return t;
}

const packWeightSource = /* wgsl */ `
struct P { rows: u32, inner: u32, c4: u32, kh: u32, kw: u32, flip: u32, tw: u32, th: u32,
           cin: u32, tkh: u32, tkw: u32, rh: u32, rw: u32, sh: u32, sw: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> W: array<f32>;
@group(0) @binding(1) var T: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= p.tw * p.th) { return; }
  let tx = gid.x % p.tw;
  let row = gid.x / p.tw;
  let tap = tx / p.c4;
  let c0 = (tx % p.c4) * 4u;
  let ty = tap / p.tkw;
  let tx2 = tap % p.tkw;
  var v = vec4<f32>();
  if (row < p.rows) {
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + j;
      if (c < p.inner) {
        if (p.flip == 0u) {
          // forward: W[row, c, ky, kx]
          v[j] = W[((row * p.cin + c) * p.kh + ty) * p.kw + tx2];
        } else {
          // grad input, phase (rh, rw): W[c, row, rh + (tkh−1−ty)·sh, rw + (tkw−1−tx)·sw]
          let kh = p.rh + (p.tkh - 1u - ty) * p.sh;
          let kw = p.rw + (p.tkw - 1u - tx2) * p.sw;
          v[j] = W[((c * p.cin + row) * p.kh + kh) * p.kw + kw];
        }
      }
    }
  }
  textureStore(T, vec2<u32>(tx, row), 0u, v);
}`;

/** Which taps a flipped weight pack holds: those of phase (rh, rw) of a stride (sh, sw) convolution. */
interface Phase {
  rh: number;
  rw: number;
  /** taps of the phase along each axis (kh = rh + t·sh) */
  tkh: number;
  tkw: number;
}

/**
 * OIHW weights → texture taps·⌈inner/4⌉ × rowsPadded, texel (tap·C4 + c4, row) =
 * the weights of output row `row` for inner channels 4·c4 … 4·c4+3 at tap
 * ty·taps_w + tx. Forward: rows = Cout, inner = Cin, all KH·KW taps. Flipped
 * (grad input as a correlation of dY): rows = Cin, inner = Cout, the taps of one
 * phase in reverse order (stride 1: the whole kernel rotated by 180°).
 */
function packWeight(device: Device, weight: Operand, g: ConvGeometry, phase: Phase | null, rowsPadded: number): PooledTexture {
  const rows = phase ? g.cin : g.cout;
  const inner = phase ? g.cout : g.cin;
  const c4 = Math.ceil(inner / 4);
  const tkh = phase ? phase.tkh : g.kh;
  const tkw = phase ? phase.tkw : g.kw;
  const tw = tkh * tkw * c4;
  const t = device.acquireTexture(tw, rowsPadded, 1);
  const pipeline = device.pipeline('conv2d tex:packWeight', 'conv2d texture pack (weight)', () => packWeightSource);
  const u = device.uniforms(
    new UniformWriter()
      .u32(rows, inner, c4, g.kh, g.kw, phase ? 1 : 0, tw, rowsPadded)
      .u32(g.cin, tkh, tkw, phase?.rh ?? 0, phase?.rw ?? 0, g.strideH, g.strideW, 0)
      .bytes(),
  );
  device.dispatch(pipeline, [weight.buffer, t.view, u], [Math.ceil((tw * rowsPadded) / 64), 1, 1]);
  return t;
}

// -------------------------------------------------- forward (and grad input)

const XYZW = ['x', 'y', 'z', 'w'];

/**
 * Y[n, m, oy, ox] = Σ_{ky,kx,c} Wt(ky,kx,c; m) · Xt(n; oy·s+ky, ox·s+kx; c), Xt
 * already padded. Each workgroup: 64 lanes × TN pixels (pixel j of lane l is
 * wid.x·64·TN + 64·j + l), TM output channels from wid.y·TM.
 */
function correlateSource(TM: number, TN: number, KW: number, hasBias: boolean): string {
  const decl: string[] = [];
  const body: string[] = [];
  for (let m = 0; m < TM; m++) for (let j = 0; j < TN; j++) decl.push(`var a${m}_${j} = 0.0;`);
  // the KW taps of a filter row in one iteration: each accumulator is written once per 4·KW multiply-adds
  for (let k = 0; k < KW; k++) {
    for (let g = 0; g < TM / SUBGROUP; g++) body.push(`let w${g}_${k} = textureLoad(Wt, vec2<u32>(wx + ${k}u * p.c4, m0 + ${g * SUBGROUP}u + sg), 0u);`);
    for (let j = 0; j < TN; j++) body.push(`let x${j}_${k} = textureLoad(Xt, vec2<u32>(bx${j} + xo + ${k}u * p.c4, by${j}), n${j});`);
  }
  for (let m = 0; m < TM; m++) {
    for (let k = 0; k < KW; k++) body.push(`let s${m}_${k} = subgroupShuffle(w${m >> 3}_${k}, ${m & 7}u);`);
    for (let j = 0; j < TN; j++) {
      let e = `a${m}_${j}`;
      for (let k = 0; k < KW; k++) e = XYZW.reduce((acc, c) => `fma(s${m}_${k}.${c}, x${j}_${k}.${c}, ${acc})`, e);
      body.push(`a${m}_${j} = ${e};`);
    }
  }
  const pix: string[] = [];
  const stores: string[] = [];
  for (let j = 0; j < TN; j++) {
    pix.push(`let q${j} = min(pix0 + ${j * 64}u, p.N - 1u);
  let n${j} = q${j} / p.hwo;
  let r${j} = q${j} % p.hwo;
  let ox${j} = r${j} % p.wo;
  let oy${j} = r${j} / p.wo;
  let bx${j} = (ox${j} * p.sw + p.inOffX) * p.c4;
  let by${j} = oy${j} * p.sh + p.inOffY;
  let yo${j} = n${j} * p.M * p.outHW + (p.outOffY + oy${j} * p.outStrideY) * p.outW + p.outOffX + ox${j} * p.outStrideX;`);
    const rows = Array.from({ length: TM }, (_, m) => `if (m0 + ${m}u < p.M) { Y[yo${j} + (m0 + ${m}u) * p.outHW] = a${m}_${j}${hasBias ? ` + bias[m0 + ${m}u]` : ''}; }`);
    stores.push(`if (pix0 + ${j * 64}u < p.N) {\n    ${rows.join('\n    ')}\n  }`);
  }
  return /* wgsl */ `enable subgroups;
struct P { N: u32, M: u32, hwo: u32, wo: u32, sh: u32, sw: u32, c4: u32, kh: u32,
           kw: u32, inOffY: u32, inOffX: u32, outHW: u32, outW: u32, outOffY: u32, outOffX: u32, outStrideY: u32,
           outStrideX: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var Xt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var Wt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${hasBias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg: u32) {
  let m0 = wid.y * ${TM}u;
  let pix0 = wid.x * ${64 * TN}u + li;
  ${pix.join('\n  ')}
  ${decl.join(' ')}
  for (var ky = 0u; ky < p.kh; ky++) {
    ${Array.from({ length: TN }, (_, j) => `let by${j} = by${j} + ky;`).join(' ')}
    for (var c4 = 0u; c4 < p.c4; c4++) {
      let wx = ky * ${KW}u * p.c4 + c4;
      let xo = c4;
      ${body.join('\n      ')}
    }
  }
  ${stores.join('\n  ')}
}`;
}

interface Correlation {
  x: PooledTexture; // padded NHWC4 input
  w: PooledTexture; // packed weights, rows padded to TM
  out: Operand;
  bias?: Operand;
  batch: number;
  M: number; // output channels
  ho: number; // output grid computed (rows, columns)
  wo: number;
  sh: number;
  sw: number;
  c4: number; // input channel quads
  kh: number; // taps
  kw: number;
  /** texels of Xt skipped before (0, 0) of the grid (grad-input phases) */
  inOff?: [number, number];
  /** where the grid lands in an output image of outH × outW: pixel (off + i·stride) (grad-input phases) */
  outImage?: { h: number; w: number; off: [number, number]; stride: [number, number] };
}

function correlate(device: Device, c: Correlation, TM: number, TN: number): void {
  const hasBias = c.bias !== undefined;
  const pipeline = device.pipeline(`conv2d tex:correlate:${TM}x${TN}:${c.kw}:${hasBias}`, `conv2d texture correlate (${TM}×${TN}, KW ${c.kw}${hasBias ? ', +bias' : ''})`, () =>
    correlateSource(TM, TN, c.kw, hasBias),
  );
  const N = c.batch * c.ho * c.wo;
  const o = c.outImage ?? { h: c.ho, w: c.wo, off: [0, 0], stride: [1, 1] };
  const [inY, inX] = c.inOff ?? [0, 0];
  const u = device.uniforms(
    new UniformWriter()
      .u32(N, c.M, c.ho * c.wo, c.wo, c.sh, c.sw, c.c4, c.kh)
      .u32(c.kw, inY, inX, o.h * o.w, o.w, o.off[0], o.off[1], o.stride[0])
      .u32(o.stride[1], 0, 0, 0)
      .bytes(),
  );
  const bindings = [c.x.view, c.w.view, c.out.buffer, u];
  if (c.bias) bindings.push(c.bias.buffer);
  device.dispatch(pipeline, bindings, [Math.ceil(N / (64 * TN)), Math.ceil(c.M / TM), 1]);
}

/** Rows per block: 8, 16 or device.policy.conv.tm, whichever wastes least for M rows. */
function blockRows(device: Device, M: number): number {
  const tm = device.policy.conv.tm;
  return M <= 8 ? 8 : M <= 16 || tm <= 16 ? Math.min(16, tm) : tm;
}

/**
 * Records Y = conv2d(X, W) (+ bias) on the texture path. With `keepInput` the
 * packed X is returned instead of released, for the repacked weight gradient to
 * reuse (the caller releases it); undefined where a row kernel ran (it packs
 * nothing) or where the weight gradient takes a row kernel (it reads X unpacked).
 */
export function conv2dForwardTexture(
  device: Device, x: Operand, weight: Operand, bias: Operand | undefined, y: Operand, g: ConvGeometry, plan: ConvPlan, keepInput = false, stats?: Operand, prologue?: InputPrologue,
): PooledTexture | undefined {
  if (prologue && plan.forward !== 'rows') throw new Error('conv2dForward: only the row kernels take a batchnorm + relu prologue');
  if (stats && !plan.forwardStatistics) throw new Error('conv2dForward: this plan computes no batchnorm statistics (plan.forwardStatistics is false)');
  // the row kernel reads X unpacked (a repacked weight gradient then packs it itself);
  // where the weight gradient is a row kernel too, its raw copy of X is kept for it
  if (plan.forward === 'rows') {
    const raw = keepInput && plan.keepsRawInput ? rawActivation(device, x, g, false) : undefined;
    // a kept raw copy is of x as given: the batchnorm's input where there is a prologue, which the weight gradient applies too
    rowConv(device, x, weight, bias, y, g, false, device.policy.conv.rowPixels, { raw, stats, prologue });
    return raw;
  }
  const TM = blockRows(device, g.cout);
  const xt = packInput(device, x, g);
  const wt = packWeight(device, weight, g, null, Math.ceil(g.cout / TM) * TM);
  const [sh, sw] = inputStride(g);
  correlate(device, { x: xt, w: wt, out: y, bias, batch: g.batch, M: g.cout, ho: g.ho, wo: g.wo, sh, sw, c4: Math.ceil(g.cin / 4), kh: g.kh, kw: g.kw }, TM, device.policy.conv.tn);
  device.releaseTexture(wt);
  // kept only for the repacked weight gradient (the row one reads X unpacked)
  if (keepInput && plan.keepsPackedInput) return xt;
  device.releaseTexture(xt);
  return undefined;
}

// Grad input as correlations of dY, one per phase. For stride s the input pixels
// ih split by r = (ih + p) mod s; pixel ih = ih0 + i·s of phase r is reached only
// by taps kh = r + t·s (t < tkh), from dY row b0 + i − t, b0 = (ih0 + p − r)/s.
// Reversing t makes it a correlation: dY rows b0 − (tkh − 1) + i + u, u < tkh,
// which a texture of dY padded by P on each side holds at texel row
// i + u + (b0 − tkh + 1 + P). At stride 1 there is one phase: the full kernel
// rotated by 180° over dY padded by K − 1 − p.

interface PhaseGeometry extends Phase {
  ih0: number;
  iw0: number;
  hph: number; // pixels of the phase along each axis
  wph: number;
  b0h: number;
  b0w: number;
}

function axisPhase(r: number, s: number, pad: number, size: number, k: number): { i0: number; n: number; taps: number; b0: number } {
  const i0 = (((r - pad) % s) + s) % s;
  const n = i0 < size ? Math.ceil((size - i0) / s) : 0;
  const taps = r < k ? Math.ceil((k - r) / s) : 0;
  return { i0, n, taps, b0: (i0 + pad - r) / s };
}

function phases(g: ConvGeometry): PhaseGeometry[] {
  const out: PhaseGeometry[] = [];
  for (let rh = 0; rh < g.strideH; rh++) {
    for (let rw = 0; rw < g.strideW; rw++) {
      const h = axisPhase(rh, g.strideH, g.padH, g.h, g.kh);
      const w = axisPhase(rw, g.strideW, g.padW, g.w, g.kw);
      out.push({ rh, rw, tkh: h.taps, tkw: w.taps, ih0: h.i0, iw0: w.i0, hph: h.n, wph: w.n, b0h: h.b0, b0w: w.b0 });
    }
  }
  return out;
}

/** dY's padding for grad input: enough zero rows above and below for every phase. */
function gradOutputPadding(g: ConvGeometry): [number, number] {
  let padH = 0;
  let padW = 0;
  for (const ph of phases(g)) {
    padH = Math.max(padH, ph.tkh - 1 - ph.b0h, ph.b0h + ph.hph - g.ho);
    padW = Math.max(padW, ph.tkw - 1 - ph.b0w, ph.b0w + ph.wph - g.wo);
  }
  return [padH, padW];
}

/** What a conv's backward shares or fuses on the row kernels (ConvPlan.sharesRawGradOutput, gradInputAccumulates). */
export interface ConvGradInputFusion {
  /** dY copied raw once for both gradients (rawActivation), kept by the caller */
  rawDy?: PooledTexture | undefined;
  /** dX += the gradient instead of dX = it (autograd's add into a gradient buffer) */
  accumulate?: boolean;
  /** the backward of the batchnorm whose output X is, folded into the epilogue (plan.gradInputBatchNorm) */
  bn?: BnBackwardEpilogue | undefined;
}

/** dY packed once for both gradients, with the padding grad input needs. */
export interface PackedGradOutput {
  texture: PooledTexture;
  padH: number;
  padW: number;
}

export function packGradOutput(device: Device, dy: Operand, g: ConvGeometry): PackedGradOutput {
  const [padH, padW] = gradOutputPadding(g);
  return { texture: packActivation(device, dy, g.cout, g.ho, g.wo, padH, padW), padH, padW };
}

/** Records dX = ∂(conv2d)/∂X applied to dY: one correlation per phase (one at stride 1). */
export function conv2dGradInputTexture(
  device: Device, dy: Operand, weight: Operand, dx: Operand, g: ConvGeometry, plan: ConvPlan, shared?: PackedGradOutput, fused: ConvGradInputFusion = {},
): void {
  // conv2dGradInput checked `fused` against the plan: only the row kernels fold a batchnorm in or add into dX here
  if (plan.gradInput === 'rows') {
    rowConv(device, dy, weight, undefined, dx, g, true, device.policy.conv.rowPixels, { raw: fused.rawDy, accumulate: fused.accumulate ?? false, bn: fused.bn });
    return;
  }
  const TM = blockRows(device, g.cin);
  const packed = shared ?? packGradOutput(device, dy, g);
  const all = phases(g);
  // phases no tap reaches (kernel smaller than the stride, e.g. 1×1 stride 2) are zeros:
  // one fill of dX is cheaper than a correlation per such phase
  // (phase (0, 0) always has a tap, so some phase is always computed)
  const empty = (ph: PhaseGeometry): boolean => ph.tkh === 0 || ph.tkw === 0;
  if (all.some(empty)) fill(device, dx, 0);
  for (const ph of all) {
    if (ph.hph === 0 || ph.wph === 0 || empty(ph)) continue;
    const wt = packWeight(device, weight, g, ph, Math.ceil(g.cin / TM) * TM);
    correlate(
      device,
      {
        x: packed.texture, w: wt, out: dx, batch: g.batch, M: g.cin, ho: ph.hph, wo: ph.wph, sh: 1, sw: 1,
        c4: Math.ceil(g.cout / 4), kh: ph.tkh, kw: ph.tkw,
        inOff: [ph.b0h - ph.tkh + 1 + packed.padH, ph.b0w - ph.tkw + 1 + packed.padW],
        outImage: { h: g.h, w: g.w, off: [ph.ih0, ph.iw0], stride: [g.strideH, g.strideW] },
      },
      TM,
      device.policy.conv.tn,
    );
    device.releaseTexture(wt);
  }
  if (!shared) device.releaseTexture(packed.texture);
}

// -------------------------------------------------------------- grad weight

/** The block for geometry g: device.policy.conv.wgrad if set, else 16 (or 8) channels × 1 quad × 1 row. */
function gradWeightBlock(device: AdapterProfile, g: ConvGeometry): GradWeightBlock {
  const b = device.policy.conv.wgrad ?? { tm: 16, cq: 1, kr: 1 };
  return { tm: g.cout <= 8 ? 8 : b.tm, cq: Math.min(b.cq, Math.ceil(g.cin / 4)), kr: g.kh % b.kr === 0 ? b.kr : 1 };
}

/**
 * Partial dW over one slice of output rows (n, oy): workgroup (block, slice),
 * block = (ky row group, ci quad group, co block), co block fastest. Each loop
 * iteration a lane takes R rows × PX pixels (ox = x0 + l, x0 + l+8, … ) and
 * chains their R·PX products into each accumulator: llvmpipe blends every value
 * written inside a loop with the loop mask, once per write, so one write per
 * R·PX multiply-adds instead of one per multiply-add (≈1.6× faster). Pixels past
 * the row or the slice read clamped texels and a zeroed dY.
 * dY is read from a texture padded by (dyPadH, dyPadW) (grad input's, when both
 * are computed), X from one padded by the conv's padding.
 * part[slice][co][ci][ky][kx] = Σ dY[n,co,oy,ox] · Xpad[n,ci,oy·sh+ky,ox·sw+kx].
 */
function gradWeightSource(b: GradWeightBlock, KW: number, R: number, PX: number): string {
  const { tm: TM, cq: CQ, kr: KR } = b;
  const decl: string[] = [];
  const body: string[] = [];
  const acc = (m: number, c: number, r: number, k: number): string => `a${m}_${c}_${r}_${k}`;
  for (let m = 0; m < TM; m++) for (let c = 0; c < 4 * CQ; c++) for (let r = 0; r < KR; r++) for (let k = 0; k < KW; k++) decl.push(`var ${acc(m, c, r, k)} = 0.0;`);
  const slots: string[] = [];
  for (let rr = 0; rr < R; rr++) {
    for (let px = 0; px < PX; px++) slots.push(`${rr}_${px}`);
  }
  // per row of the iteration: its image and row (uniform), and whether it is in the slice
  for (let rr = 0; rr < R; rr++) {
    // R ≤ ho, so a row of the iteration wraps into the next image at most once (no loop, no mask)
    body.push(`let w${rr} = select(0u, 1u, oy + ${rr}u >= p.ho); let oy${rr} = oy + ${rr}u - w${rr} * p.ho; let n${rr} = n + w${rr};`);
    body.push(`let rowOk${rr} = r + ${rr}u < r1;`);
  }
  for (const sl of slots) {
    const [rr, px] = sl.split('_');
    body.push(`let ox${sl} = x0 + sg + ${8 * Number(px)}u; let ok${sl} = rowOk${rr} && ox${sl} < p.wo; let oxc${sl} = min(ox${sl}, p.wo - 1u);`);
    body.push(`let dyx${sl} = (oxc${sl} + p.dyPadW) * p.co4 + coBlock * ${TM / 4}u; let xx${sl} = oxc${sl} * p.sw * p.ci4 + ci4;`);
    body.push(`let iy${sl} = oy${rr} * p.sh + ky0; let dyy${sl} = oy${rr} + p.dyPadH;`);
    for (let i = 0; i < TM / 4; i++) body.push(`let d${i}_${sl} = select(vec4<f32>(), textureLoad(dYt, vec2<u32>(dyx${sl} + ${i}u, dyy${sl}), n${rr}), ok${sl});`);
    for (let q = 0; q < CQ; q++) {
      for (let r = 0; r < KR; r++) {
        for (let k = 0; k < KW; k++) body.push(`let x${q}_${r}_${k}_${sl} = textureLoad(Xt, vec2<u32>(xx${sl} + ${k}u * p.ci4 + ${q}u, iy${sl} + ${r}u), n${rr});`);
      }
    }
  }
  for (let m = 0; m < TM; m++) {
    for (let q = 0; q < CQ; q++) {
      for (let r = 0; r < KR; r++) {
        for (let k = 0; k < KW; k++) {
          for (let c = 0; c < 4; c++) {
            const a = acc(m, 4 * q + c, r, k);
            const chain = slots.reduce((e, sl) => `fma(d${m >> 2}_${sl}.${XYZW[m & 3]}, x${q}_${r}_${k}_${sl}.${XYZW[c]}, ${e})`, a);
            body.push(`${a} = ${chain};`);
          }
        }
      }
    }
  }
  const out: string[] = [];
  let idx = 0;
  for (let m = 0; m < TM; m++) {
    for (let c = 0; c < 4 * CQ; c++) {
      for (let r = 0; r < KR; r++) {
        for (let k = 0; k < KW; k++) {
          out.push(
            `{ let s = subgroupAdd(${acc(m, c, r, k)}); if (sg == ${idx % SUBGROUP}u && co0 + ${m}u < p.cout && ci0 + ${c}u < p.cin) { ` +
              `part[base + ((co0 + ${m}u) * p.cin + ci0 + ${c}u) * p.khw + (ky0 + ${r}u) * ${KW}u + ${k}u] = s; } }`,
          );
          idx++;
        }
      }
    }
  }
  return /* wgsl */ `enable subgroups;
struct P { rows: u32, rowsPerSlice: u32, ho: u32, wo: u32, sh: u32, sw: u32, co4: u32, ci4: u32,
           cout: u32, cin: u32, khw: u32, coBlocks: u32, cqBlocks: u32, dyPadH: u32, dyPadW: u32, _p: u32 }
@group(0) @binding(0) var dYt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var Xt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${SUBGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) sg: u32) {
  // x = block (fastest: the blocks of one slice run back to back while its texels are in cache), y = slice
  let coBlock = wid.x % p.coBlocks;
  let cqBlock = (wid.x / p.coBlocks) % p.cqBlocks;
  let ky0 = (wid.x / (p.coBlocks * p.cqBlocks)) * ${KR}u;
  let co0 = coBlock * ${TM}u;
  let ci4 = cqBlock * ${CQ}u;
  let ci0 = ci4 * 4u;
  let r0 = wid.y * p.rowsPerSlice;
  let r1 = min(p.rows, r0 + p.rowsPerSlice);
  ${decl.join(' ')}
  var n = r0 / p.ho;
  var oy = r0 % p.ho;
  for (var r = r0; r < r1; r += ${R}u) {
    // rows wider than 8·PX (R is then 1) take several column blocks
    for (var x0 = 0u; x0 < p.wo; x0 += ${8 * PX}u) {
      ${body.join('\n      ')}
    }
    oy += ${R}u;
    while (oy >= p.ho) { oy -= p.ho; n++; }
  }
  let base = wid.y * p.cout * p.cin * p.khw;
  ${out.join('\n  ')}
}`;
}

/** Pixels per lane per iteration of the grad-weight loop: PX columns (ox = l + 8j) × R rows (R ≤ ho), about 4 in all. */
function gradWeightSlots(device: AdapterProfile, wo: number, ho: number): { R: number; PX: number } {
  const slots = device.policy.conv.wgradSlots;
  const PX = Math.min(slots, Math.ceil(wo / SUBGROUP));
  return { R: Math.max(1, Math.min(ho, Math.floor(slots / PX))), PX };
}

/**
 * Slices of the batch's output rows: each slice's texels (dY and X rows) should
 * fit in a core's L2 (policy.conv.wgradSliceBytes), since every block of the slice
 * reads all of them; at least WGRAD_MIN_WORKGROUPS workgroups in all; partial sums
 * bounded in size.
 */
const WGRAD_MIN_WORKGROUPS = 96;
const WGRAD_MAX_PARTIAL_BYTES = 32 << 20;

function gradWeightBlocks(g: ConvGeometry, b: GradWeightBlock): { coBlocks: number; cqBlocks: number; rowBlocks: number } {
  return { coBlocks: Math.ceil(g.cout / b.tm), cqBlocks: Math.ceil(Math.ceil(g.cin / 4) / b.cq), rowBlocks: g.kh / b.kr };
}

/** How many slices of the batch's output rows the texture grad-weight kernel sums separately. */
export function gradWeightSlicesTexture(device: AdapterProfile, g: ConvGeometry): { slices: number; rowsPerSlice: number } {
  const { coBlocks, cqBlocks, rowBlocks } = gradWeightBlocks(g, gradWeightBlock(device, g));
  const blocks = coBlocks * cqBlocks * rowBlocks;
  const rows = g.batch * g.ho;
  // texel bytes one output row brings in: its dY row and the sh input rows it steps over
  const rowBytes = 16 * ((g.wo + 2 * g.padW + 2) * Math.ceil(g.cout / 4) + g.strideH * (g.w + 2 * g.padW) * Math.ceil(g.cin / 4));
  const byCache = Math.ceil(rows / Math.max(1, Math.floor(device.policy.conv.wgradSliceBytes / rowBytes)));
  const byWork = Math.ceil(WGRAD_MIN_WORKGROUPS / blocks);
  const byMemory = Math.max(1, Math.floor(WGRAD_MAX_PARTIAL_BYTES / (4 * g.cout * g.cin * g.kh * g.kw)));
  // (at most 65535: the grid's y; WebGPU's guaranteed workgroups per dimension)
  let slices = Math.max(1, Math.min(Math.max(byCache, byWork), byMemory, rows, 65535));
  const rowsPerSlice = Math.ceil(rows / slices);
  slices = Math.ceil(rows / rowsPerSlice);
  return { slices, rowsPerSlice };
}

/**
 * Records the partial weight gradients of the texture path into `parts`
 * ([slices, Cout, Cin, KH, KW]); the caller sums the slices. `dyTex`, when
 * given, is dY already packed with padding (padH, padW) (grad input's);
 * `xTex`, when given, X packed by the forward pass (conv2dForwardTexture's keepInput).
 * The 1×1 row kernel (rowGradWeight) reads neither: it copies dY and X unpacked, and
 * keeps the slices chosen here for the repacked kernel's blocks (the caller sized
 * `parts` by them).
 */
export function conv2dGradWeightTexture(
  device: Device,
  dy: Operand,
  x: Operand,
  parts: Operand,
  g: ConvGeometry,
  plan: ConvPlan,
  dyTex?: PackedGradOutput,
  xTex?: PooledTexture,
  rawDy?: PooledTexture,
  prologue?: InputPrologue,
): void {
  if (prologue && plan.gradWeight !== 'rows') throw new Error('conv2dGradWeight: only the row kernels take a batchnorm + relu prologue');
  const b = gradWeightBlock(device, g);
  const { slices, rowsPerSlice } = gradWeightSlicesTexture(device, g);
  if (parts.size < slices * g.cout * g.cin * g.kh * g.kw) throw new Error(`conv2dGradWeightTexture: partials tensor too small for ${slices} slices`);
  if (plan.gradWeight === 'rows') {
    // xTex here is the forward's raw copy of X (conv2dForwardTexture keeps it where plan.keepsRawInput)
    rowGradWeight(device, dy, x, parts, g, slices, rowsPerSlice, { dy: rawDy, x: plan.keepsRawInput ? xTex : undefined }, prologue);
    return;
  }
  const dyt = dyTex?.texture ?? packActivation(device, dy, g.cout, g.ho, g.wo, 0, 0);
  const xt = xTex ?? packInput(device, x, g);
  const [sh, sw] = inputStride(g);
  const { R, PX } = gradWeightSlots(device, g.wo, g.ho);
  const key = `${b.tm}x${b.cq}x${b.kr}:${g.kw}:${R}x${PX}`;
  const pipeline = device.pipeline(`conv2d tex:gradWeight:${key}`, `conv2d texture grad weight (${b.tm}×${b.cq}×${b.kr}, KW ${g.kw}, ${R}×${PX} px)`, () =>
    gradWeightSource(b, g.kw, R, PX),
  );
  const { coBlocks, cqBlocks, rowBlocks } = gradWeightBlocks(g, b);
  const u = device.uniforms(
    new UniformWriter()
      .u32(g.batch * g.ho, rowsPerSlice, g.ho, g.wo, sh, sw, Math.ceil(g.cout / 4), Math.ceil(g.cin / 4))
      .u32(g.cout, g.cin, g.kh * g.kw, coBlocks, cqBlocks, dyTex?.padH ?? 0, dyTex?.padW ?? 0, 0)
      .bytes(),
  );
  device.dispatch(pipeline, [dyt.view, xt.view, parts.buffer, u], [coBlocks * cqBlocks * rowBlocks, slices, 1]);
  if (!dyTex) device.releaseTexture(dyt);
  if (!xTex) device.releaseTexture(xt);
}
