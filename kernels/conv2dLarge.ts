// The conv GEMMs (forward, grad input, grad weight) on the large-tile GEMM family
// (kernels/gemmLarge.ts): the discrete-GPU kernels for convolutions that fill the
// GPU. The GEMM forms are conv2d.ts's (see its header): implicit GEMM, operands
// gathered straight from NCHW activations and OIHW weights, grad input one GEMM per
// stride phase over its valid taps (K tap-major, Cout padded to whole slices so a
// slice never straddles two taps), grad weight split over K (partial products summed
// by conv2d.ts's sumSplits). Each thread's B columns are fixed for the whole K loop,
// so their pixel positions are decoded once; per-slice positions once per slice.
// Operands may be f16 (shader-f16): X, W and dY as f16 arrays, the bias f32; Y and dX
// are stored as their operand's dtype says (f16 activations in half-precision
// training), dW and its partials f32.
import type { AdapterProfile, Device } from '../gpu/device.ts';
import type { GemmTile } from '../gpu/policy.ts';
import { type ConvGeometry, type ConvTiles, convParams, convParamsWgsl } from './convGeometry.ts';
import { type DType, type FloatType, type Operand, floatType } from './operand.ts';
import { isSoftwareAdapter } from './common.ts';
import { withF16 } from './cast.ts';
import { type Elem, type GemmOperand, TILE_128, TILE_128x64, TILE_64x128, gemmSource, quadBody, tileKey } from './gemmLarge.ts';
import { LARGE_MIN_K, LARGE_MIN_WORKGROUPS } from './matmulLarge.ts';

const PARAMS = convParamsWgsl('coutPad');

/** KH, KW, KHW as constants for 1×1 and 3×3 (divisions by them fold), else read from the uniforms. */
function sizeConsts(kh: number, kw: number): { decl: string; key: string } {
  const fixed = (kh === 1 && kw === 1) || (kh === 3 && kw === 3);
  return fixed ? { decl: `const KH = ${kh}u;\nconst KW = ${kw}u;\nconst KHW = ${kh * kw}u;`, key: `${kh}x${kw}` } : { decl: '', key: 'KHxKW' };
}

/** The kernel-size names read from the uniforms where they are not constants (uniform values keep the barriers in uniform control flow). */
function sized(src: string, key: string): string {
  if (key !== 'KHxKW') return src;
  return src.replace(/\bKHW\b/g, '(p.kh * p.kw)').replace(/\bKH\b/g, 'p.kh').replace(/\bKW\b/g, 'p.kw');
}

/** The GEMM shapes of a convolution's three parts: [M, N, K] (grad input: the largest phase). */
export function convGemms(g: ConvGeometry): { forward: number[]; gradInput: number[]; gradWeight: number[] } {
  return {
    forward: [g.cout, g.batch * g.ho * g.wo, g.cin * g.kh * g.kw],
    gradInput: [g.cin, g.batch * Math.ceil(g.h / g.strideH) * Math.ceil(g.w / g.strideW), Math.ceil(g.kh / g.strideH) * Math.ceil(g.kw / g.strideW) * g.cout],
    gradWeight: [g.cout, g.cin * g.kh * g.kw, g.batch * g.ho * g.wo],
  };
}

/** A tile for a GEMM of M×N×K spread over `z` workgroup layers, when it fills a discrete GPU; else null. */
function pickTile(M: number, N: number, K: number, z: number): GemmTile | null {
  if (K < LARGE_MIN_K) return null;
  for (const t of [TILE_128, TILE_128x64, TILE_64x128]) {
    if (M >= t.bm && N >= t.bn && Math.ceil(M / t.bm) * Math.ceil(N / t.bn) * z >= LARGE_MIN_WORKGROUPS) return t;
  }
  return null;
}

/** For a GEMM too small to fill the GPU that must still take a large tile (f16 data): the one that wastes least. */
function smallestTile(M: number, N: number): GemmTile {
  return M >= N ? TILE_128x64 : TILE_64x128;
}

/**
 * Which parts of this convolution take the large tiles: on a non-software adapter
 * with the 'auto' path, those whose GEMM fills the GPU; with the 'large' path, every
 * part (the policy's tile, else 128×128). `splits`: the weight gradient's split-K.
 * `everyPart` (f16 activations, which only these kernels store): on a GPU every part
 * takes a tile, the smallest where none fills it.
 */
export function planLargeConv(p: AdapterProfile, g: ConvGeometry, splits: number, everyPart = false): ConvTiles {
  const path = p.policy.conv.path;
  if (path === 'large') {
    const t = p.policy.conv.tile ?? TILE_128;
    return { forward: t, gradInput: t, gradWeight: t };
  }
  if (path !== 'auto' || isSoftwareAdapter(p)) return {};
  const s = convGemms(g);
  const tuned = p.policy.conv.tuning;
  const pick = (part: keyof ConvTiles, [M, N, K]: number[], z: number): GemmTile | null => {
    const t = tuned?.get(convShapeClass(part, g));
    if (t !== undefined && (t || !everyPart)) return t; // the autotuner's choice (null: the 64-wide buffer kernel)
    return pickTile(M!, N!, K!, z) ?? (everyPart ? smallestTile(M!, N!) : null);
  };
  const out: ConvTiles = {};
  const f = pick('forward', s.forward, 1);
  if (f) out.forward = f;
  const gi = pick('gradInput', s.gradInput, g.strideH * g.strideW);
  if (gi) out.gradInput = gi;
  const gw = pick('gradWeight', s.gradWeight, splits);
  if (gw) out.gradWeight = gw;
  return out;
}

/** The autotuner's class of one part of a convolution: its GEMM rounded to powers of two, and the kernel size and stride. */
export function convShapeClass(part: keyof ConvTiles, g: ConvGeometry): string {
  const p2 = (x: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, x)));
  const [M, N, K] = convGemms(g)[part];
  return `conv ${part} ${g.kh}x${g.kw}/${g.strideH}:${p2(M!)}x${p2(N!)}x${p2(K!)}`;
}

function check(device: Device, elem: Elem, what: string): void {
  if (elem === 'f16' && !device.hasShaderF16) throw new Error(`${what} with f16 operands: the adapter '${device.label}' has no shader-f16`);
}

const arr = (e: Elem): string => `array<${e}>`;

/** A GEMM operand that may say it already holds f16 data (an f16 tensor). */
export type ConvOperand = GemmOperand & { readonly dtype?: DType };

/**
 * Runs `fn` on the operands with their element type: as given for an explicit
 * 'f16' (raw f16 buffers) or all-f32 data at f32 precision; else f16, casting the
 * operands that are f32 (the weights of an f16 activation, or everything under
 * policy.precision 'f16') to pooled f16 copies first.
 */
function withElem(device: Device, ops: ConvOperand[], elem: Elem, fn: (ops: GemmOperand[], elem: Elem) => void): void {
  const anyHalf = ops.some((o) => o.dtype === 'f16');
  if (elem === 'f16' || (!anyHalf && device.policy.precision !== 'f16')) return fn(ops, elem);
  const toCast = ops.filter((o) => o.dtype !== 'f16');
  withF16(device, toCast, (halves) => {
    let i = 0;
    fn(ops.map((o) => (o.dtype === 'f16' ? o : halves[i++]!)), 'f16');
  });
}

/** The storage of an output (Y, dX): f16 only from f16 operands (the f32 kernels do not enable f16). */
function outType(o: Operand, elem: Elem, what: string): FloatType {
  const t = floatType(o, what);
  if (t === 'f16' && elem !== 'f16') throw new Error(`${what}: an f16 output needs f16 operands`);
  return t;
}

// ------------------------------------------------------------------ forward

function forwardSource(t: GemmTile, kh: number, kw: number, hasBias: boolean, E: Elem, O: FloatType): string {
  const sz = sizeConsts(kh, kw);
  const decls = /* wgsl */ `${PARAMS}
@group(0) @binding(0) var<storage, read> X: ${arr(E)};
@group(0) @binding(1) var<storage, read> Wt: ${arr(E)};
@group(0) @binding(2) var<storage, read_write> Y: array<${O}>;
@group(0) @binding(3) var<uniform> p: Params;
${hasBias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
${sz.decl}
// this thread's four im2col columns (output pixels): first input row and column, image base
var<private> colOk: array<bool, 4>;
var<private> ihb: array<i32, 4>;
var<private> iwb: array<i32, 4>;
var<private> xBase: array<u32, 4>;

// A = W as stored, M×K row-major
fn ldA(m: u32, k: u32) -> vec4<${E}> {
  ${quadBody('Wt', E, (c) => `m * p.K + k + ${c}u`, (c) => `m < p.M && k + ${c}u < p.K`)}
}
// B[k][n..n+3] = im2col(X): k = (ci, kh, kw); the columns are this thread's
fn xAt(k: u32, c: u32) -> ${E} {
  let tap = k % KHW;
  let ih = ihb[c] + i32(tap / KW);
  let iw = iwb[c] + i32(tap % KW);
  if (!colOk[c] || k >= p.K || ih < 0 || ih >= i32(p.h) || iw < 0 || iw >= i32(p.w)) { return ${E}(0); }
  return X[xBase[c] + ((k / KHW) * p.h + u32(ih)) * p.w + u32(iw)];
}
fn ldB(k: u32, n: u32) -> vec4<${E}> {
  return vec4<${E}>(xAt(k, 0u), xAt(k, 1u), xAt(k, 2u), xAt(k, 3u));
}
fn st(m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.M) { return; }
  let hwo = p.ho * p.wo;
  ${hasBias ? 'let b = bias[m];' : 'let b = 0.0;'}
  for (var c = 0u; c < 4u; c++) {
    let nn = n + c;
    if (nn < p.N) { Y[(nn / hwo) * p.cout * hwo + m * hwo + nn % hwo] = ${O}(v[c] + b); }
  }
}`;
  const setup = `  let hwo = p.ho * p.wo;
  for (var c = 0u; c < 4u; c++) {
    let n = bN + c;
    let pix = n % hwo;
    colOk[c] = n < p.N;
    ihb[c] = i32((pix / p.wo) * p.strideH) - i32(p.padH);
    iwb[c] = i32((pix % p.wo) * p.strideW) - i32(p.padW);
    xBase[c] = (n / hwo) * p.cin * p.h * p.w;
  }
  let kBegin = 0u; let kEnd = p.K;`;
  return sized(gemmSource(t, { elem: E, what: `conv2d ${sz.key}${hasBias ? ' +bias' : ''}`, decls, setup }), sz.key);
}

/** Records y = conv2d(x, weight) (+ bias) with the large tile `t`. */
export function conv2dForwardLarge(
  device: Device, x: ConvOperand, weight: ConvOperand, bias: Operand | undefined, y: Operand, g: ConvGeometry, t: GemmTile, elem: Elem = 'f32',
): void {
  withElem(device, [x, weight], elem, ([hx, hw], e) => forwardLarge(device, hx!, hw!, bias, y, g, t, e));
}

function forwardLarge(device: Device, x: GemmOperand, weight: GemmOperand, bias: Operand | undefined, y: Operand, g: ConvGeometry, t: GemmTile, elem: Elem): void {
  check(device, elem, 'conv2d');
  const O = outType(y, elem, 'conv2d');
  const [M, N, K] = convGemms(g).forward as [number, number, number];
  const hasBias = bias !== undefined;
  const sz = sizeConsts(g.kh, g.kw);
  const pipeline = device.pipeline(`conv2d-large:${tileKey(t)}:${sz.key}:${hasBias}:${elem}:${O}`, `conv2d ${sz.key} (large ${t.bm}×${t.bn}${hasBias ? ', +bias' : ''}${elem === 'f16' ? `, f16→${O}` : ''})`, () =>
    forwardSource(t, g.kh, g.kw, hasBias, elem, O),
  );
  const bindings: (GPUBuffer | GPUBufferBinding)[] = [x.buffer, weight.buffer, y.buffer, device.uniforms(convParams(g, M, N, K))];
  if (bias) bindings.push(bias.buffer);
  device.dispatch(pipeline, bindings, [Math.ceil(N / t.bn), Math.ceil(M / t.bm), 1]);
}

// --------------------------------------------------------------- grad input

function gradInputSource(t: GemmTile, kh: number, kw: number, E: Elem, O: FloatType, accumulate: boolean): string {
  const sz = sizeConsts(kh, kw);
  const decls = /* wgsl */ `${PARAMS}
@group(0) @binding(0) var<storage, read> dY: ${arr(E)};
@group(0) @binding(1) var<storage, read> Wt: ${arr(E)};
@group(0) @binding(2) var<storage, read_write> dX: array<${O}>;
@group(0) @binding(3) var<uniform> p: Params;
${sz.decl}
// the phase (wid.z) and its geometry (see conv2d.ts's grad input)
var<private> ih0: u32;
var<private> iw0: u32;
var<private> wph: u32;
var<private> phasePix: u32;
var<private> nPhase: u32;
// this slice's tap: its weight offset and first K index
var<private> wTap: u32;
var<private> tapK: u32;
// this thread's four columns (phase pixels): the output pixel the slice's tap reads
var<private> ohb: array<i32, 4>;
var<private> owb: array<i32, 4>;
var<private> dyBase: array<u32, 4>;
var<private> colOk: array<bool, 4>;
var<private> dyPix: array<u32, 4>;

// A[ci][k..k+3] = W[co, ci, tap] for co = k − tapK ..
fn ldA(m: u32, k: u32) -> vec4<${E}> {
  let co = k - tapK;
  ${quadBody('Wt', E, (c) => `((co + ${c}u) * p.cin + m) * KHW + wTap`, (c) => `m < p.M && co + ${c}u < p.cout`)}
}
// B[k][n..n+3] = dY[n, co, oh, ow] of this thread's columns
fn ldB(k: u32, n: u32) -> vec4<${E}> {
  let co = k - tapK;
  ${quadBody('dY', E, (c) => `dyPix[${c}] + co * p.ho * p.wo`, (c) => `colOk[${c}] && co < p.cout`)}
}
// every pixel of the phase is written, zero when no tap reaches it (K = 0)
fn st(m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var c = 0u; c < 4u; c++) {
    let nn = n + c;
    if (nn < nPhase) {
      let q = nn % phasePix;
      let ih = ih0 + (q / wph) * p.strideH;
      let iw = iw0 + (q % wph) * p.strideW;
      let at = (nn / phasePix) * p.cin * p.h * p.w + m * p.h * p.w + ih * p.w + iw;
      dX[at] = ${O}(${accumulate ? 'f32(dX[at]) + ' : ''}v[c]);
    }
  }
}`;
  const setup = `  let sh = p.strideH;
  let sw = p.strideW;
  let rh = z / sw;
  let rw = z % sw;
  ih0 = (rh + sh - p.padH % sh) % sh;
  iw0 = (rw + sw - p.padW % sw) % sw;
  let hph = select(0u, (p.h - ih0 + sh - 1u) / sh, ih0 < p.h);
  wph = max(select(0u, (p.w - iw0 + sw - 1u) / sw, iw0 < p.w), 1u);
  let nkh = select(0u, (KH - rh + sh - 1u) / sh, rh < KH);
  let nkw = select(0u, (KW - rw + sw - 1u) / sw, rw < KW);
  let baseH = (ih0 + p.padH - rh) / sh;
  let baseW = (iw0 + p.padW - rw) / sw;
  let taps = nkh * nkw;
  phasePix = max(hph * wph, 1u);
  nPhase = select(0u, p.batch * hph * wph, hph > 0u);
  for (var c = 0u; c < 4u; c++) {
    let n = bN + c;
    let pix = n % phasePix;
    colOk[c] = n < nPhase;
    ohb[c] = i32(baseH + pix / wph);
    owb[c] = i32(baseW + pix % wph);
    dyBase[c] = (n / phasePix) * p.cout * p.ho * p.wo;
  }
  let kBegin = 0u; let kEnd = taps * p.coutPad;`;
  // each slice lies in one tap (coutPad is a whole number of slices)
  const slice = `let tap = ks / p.coutPad;
      let th = tap / max(nkw, 1u);
      let tw = tap % max(nkw, 1u);
      wTap = (rh + th * sh) * KW + rw + tw * sw;
      tapK = tap * p.coutPad;
      for (var c = 0u; c < 4u; c++) {
        let oh = ohb[c] - i32(th);
        let ow = owb[c] - i32(tw);
        let ok = n0 + (li % ${t.bn / 4}u) * 4u + c < nPhase && oh >= 0 && oh < i32(p.ho) && ow >= 0 && ow < i32(p.wo);
        colOk[c] = ok;
        dyPix[c] = dyBase[c] + u32(max(oh, 0)) * p.wo + u32(max(ow, 0));
      }`;
  return sized(gemmSource(t, { elem: E, what: `conv2d grad input ${sz.key}`, decls, setup, slice }), sz.key);
}

/** Records dX = ∂(conv2d)/∂X applied to dY with the large tile `t` (`accumulate`: dX += it, autograd's add into a gradient). */
export function conv2dGradInputLarge(device: Device, dy: ConvOperand, weight: ConvOperand, dx: Operand, g: ConvGeometry, t: GemmTile, elem: Elem = 'f32', accumulate = false): void {
  withElem(device, [dy, weight], elem, ([hdy, hw], e) => gradInputLarge(device, hdy!, hw!, dx, g, t, e, accumulate));
}

function gradInputLarge(device: Device, dy: GemmOperand, weight: GemmOperand, dx: Operand, g: ConvGeometry, t: GemmTile, elem: Elem, accumulate: boolean): void {
  check(device, elem, 'conv2d grad input');
  const O = outType(dx, elem, 'conv2d grad input');
  const [M, maxN] = convGemms(g).gradInput as [number, number, number];
  const sz = sizeConsts(g.kh, g.kw);
  const coutPad = Math.ceil(g.cout / t.bk) * t.bk;
  const pipeline = device.pipeline(`conv2d gradInput-large:${tileKey(t)}:${sz.key}:${elem}:${O}:${accumulate}`, `conv2d grad input ${sz.key} (large ${t.bm}×${t.bn}${elem === 'f16' ? `, f16→${O}` : ''}${accumulate ? ', add into' : ''})`, () =>
    gradInputSource(t, g.kh, g.kw, elem, O, accumulate),
  );
  const u = device.uniforms(convParams(g, M, 0, 0, 0, coutPad));
  device.dispatch(pipeline, [dy.buffer, weight.buffer, dx.buffer, u], [Math.ceil(maxN / t.bn), Math.ceil(M / t.bm), g.strideH * g.strideW]);
}

// -------------------------------------------------------------- grad weight

function gradWeightSource(t: GemmTile, kh: number, kw: number, E: Elem): string {
  const sz = sizeConsts(kh, kw);
  const decls = /* wgsl */ `${PARAMS}
@group(0) @binding(0) var<storage, read> dY: ${arr(E)};
@group(0) @binding(1) var<storage, read> X: ${arr(E)};
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${sz.decl}
var<private> kEndP: u32;
var<private> outBase: u32;
// this thread's A quad in the slice: four output pixels k (dY offset of channel 0)
var<private> aOk: array<bool, 4>;
var<private> aOff: array<u32, 4>;
// this thread's four B columns: filter taps (ci, kh, kw)
var<private> tapOk: array<bool, 4>;
var<private> tapOff: array<u32, 4>;
var<private> tapH: array<i32, 4>;
var<private> tapW: array<i32, 4>;

// A[co][k..k+3] = dY[b, co, oh, ow] of the pixels k (decoded per slice)
fn ldA(m: u32, k: u32) -> vec4<${E}> {
  ${quadBody('dY', E, (c) => `aOff[${c}] + m * p.ho * p.wo`, (c) => `aOk[${c}] && m < p.M`)}
}
// B[k][n..n+3] = X[b, ci, oh·s − p + kh, ow·s − p + kw] of this thread's taps
fn ldB(k: u32, n: u32) -> vec4<${E}> {
  let hwo = p.ho * p.wo;
  let q = k % hwo;
  let ihb = i32((q / p.wo) * p.strideH);
  let iwb = i32((q % p.wo) * p.strideW);
  let xb = (k / hwo) * p.cin * p.h * p.w;
  var v = vec4<${E}>();
  for (var c = 0u; c < 4u; c++) {
    let ih = ihb + tapH[c];
    let iw = iwb + tapW[c];
    if (k < kEndP && tapOk[c] && ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
      v[c] = X[xb + tapOff[c] + u32(ih) * p.w + u32(iw)];
    }
  }
  return v;
}
fn st(m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var c = 0u; c < 4u; c++) {
    if (n + c < p.N) { out[outBase + m * p.N + n + c] = v[c]; }
  }
}`;
  const setup = `  let kBegin = z * p.kChunk;
  let kEnd = min(p.K, kBegin + p.kChunk);
  kEndP = kEnd;
  outBase = z * p.M * p.N;
  for (var c = 0u; c < 4u; c++) {
    let n = bN + c;
    let tap = n % KHW;
    tapOk[c] = n < p.N;
    tapOff[c] = (n / KHW) * p.h * p.w;
    tapH[c] = i32(tap / KW) - i32(p.padH);
    tapW[c] = i32(tap % KW) - i32(p.padW);
  }`;
  const slice = `for (var c = 0u; c < 4u; c++) {
        let k = ks + aK + c;
        let hwo = p.ho * p.wo;
        aOk[c] = k < kEndP;
        aOff[c] = (k / hwo) * p.cout * hwo + k % hwo;
      }`;
  return sized(gemmSource(t, { elem: E, what: `conv2d grad weight ${sz.key}`, decls, setup, slice }), sz.key);
}

/**
 * Records the weight gradient with the large tile `t` into `target`: dW itself, or
 * with splits > 1 the partial products (splits·|W| floats) of K chunks of `chunk`.
 */
export function conv2dGradWeightLarge(
  device: Device, dy: ConvOperand, x: ConvOperand, target: Operand, g: ConvGeometry, t: GemmTile, splits: number, chunk: number, elem: Elem = 'f32',
): void {
  withElem(device, [dy, x], elem, ([hdy, hx], e) => gradWeightLarge(device, hdy!, hx!, target, g, t, splits, chunk, e));
}

function gradWeightLarge(device: Device, dy: GemmOperand, x: GemmOperand, target: Operand, g: ConvGeometry, t: GemmTile, splits: number, chunk: number, elem: Elem): void {
  check(device, elem, 'conv2d grad weight');
  const [M, N, K] = convGemms(g).gradWeight as [number, number, number];
  const sz = sizeConsts(g.kh, g.kw);
  const pipeline = device.pipeline(`conv2d gradWeight-large:${tileKey(t)}:${sz.key}:${elem}`, `conv2d grad weight ${sz.key} (large ${t.bm}×${t.bn}${elem === 'f16' ? ', f16' : ''})`, () =>
    gradWeightSource(t, g.kh, g.kw, elem),
  );
  const u = device.uniforms(convParams(g, M, N, K, splits > 1 ? chunk : K));
  device.dispatch(pipeline, [dy.buffer, x.buffer, target.buffer, u], [Math.ceil(N / t.bn), Math.ceil(M / t.bm), splits]);
}
