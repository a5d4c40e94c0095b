// 2-D convolution as implicit GEMM: forward, gradient w.r.t. the input, gradient
// w.r.t. the weights. Activations NCHW, weights OIHW, all contiguous f32. No
// im2col matrix is ever materialised: each kernel gathers its GEMM operand tiles
// straight from the activation tensors while staging them in workgroup memory.
// These are the kernels GPUs run. On software adapters whose subgroups are 8 lanes
// (lavapipe) each entry point below hands over to kernels/conv2dTexture.ts and its
// row kernels (kernels/conv2dRows.ts), 5-20× faster there (storage textures,
// subgroup-shared weights); convPathConfig chooses.
//
//   forward      Y[n,co,oh,ow] = Σ W[co,ci,kh,kw]·X[n,ci,oh·s−p+kh,ow·s−p+kw] (+ b[co])
//                GEMM M = Cout, N = batch·Ho·Wo, K = Cin·KH·KW; A = W (row-major
//                M×K as stored), B = im2col(X) gathered.
//   grad input   dX = transposed convolution of dY. For stride s the input pixels
//                split into s·s phases by (ih+p) mod s; within a phase only the taps
//                kh ≡ (ih+p) mod s reach an output, so each phase is its own GEMM
//                over exactly its valid taps (no multiply by an inserted zero):
//                M = Cin, N = batch·|phase pixels|, K = |phase taps|·Cout (tap-major,
//                Cout in slices), one phase per workgroup z.
//   grad weight  dW[co,(ci,kh,kw)] = Σ_{n,oh,ow} dY[n,co,oh,ow]·X[n,ci,oh·s−p+kh,…]
//                M = Cout, N = Cin·KH·KW, K = batch·Ho·Wo. K is long (131072 for a
//                CIFAR batch of 128 at 32×32) and M·N small, so K is split across
//                workgroups (z) into partial products summed by a second kernel
//                (split-K; deterministic, no atomics).
//
// Tiling (as kernels/matmul.ts): a workgroup computes a BM×64 tile of the GEMM
// output, each thread a TM×4 register block (8×4 in 64-row tiles, 4×4 in 16- and
// 32-row ones); K advances in slices of 16 staged in workgroup memory and read
// back as vec4. BM is 16, 32 or 64, picked from M so the 16- and 32-channel
// layers of a CIFAR ResNet do not waste most of a tile.
// Each thread's gather position is fixed across the K loop where the layout
// allows it (the im2col column in forward and grad input, the filter taps in
// grad weight), so the per-element index arithmetic in the loop is a few ops.
// For 1×1 and 3×3 kernels KH and KW are compile-time constants (divisions by
// them fold); other sizes share a variant reading them from the uniforms, as
// stride and padding always are. On GPUs the tile loops are unrolled; on
// software adapters (lavapipe) they are not, which cuts LLVM's compile time
// about fivefold at much the same speed (convKernelConfig overrides this).
//
// Versions tried (lavapipe, batch 32, ResNet-20 3×3 layers; figures are noisy, the
// machine was shared):
//   - naive one thread per output: 0.3 GFLOP/s (kept only as the float64
//     reference in test/reference-conv.ts);
//   - this tiling with 4×4 blocks: 1-2 GFLOP/s forward; 8×4 blocks in 64-row
//     tiles a little better. TF.js's WebGPU conv on the same adapter: about the
//     same forward and grad input, 4-5× slower grad weight;
//   - grad input over K = (co, tap) with runtime divisions per loaded element:
//     1.5-2× slower than the tap-major loop (x86 has no vector integer division,
//     llvmpipe runs 8 scalar divisions per vector);
//   - grad input over all Cout·KH·KW taps with zero-filled stride holes: 4× the
//     work at stride 2 (replaced by the phases);
//   - for llvmpipe only: no workgroup memory (A read at workgroup-uniform
//     addresses, B per lane), lane = output channel with B uniform, B staged and
//     read uniformly: none beat this tiling. llvmpipe turns every per-lane load
//     (global or workgroup memory) into a bounds-checked scalar load per lane and
//     fma() into mul + add, so on a CPU these kernels are load-bound whatever
//     the blocking.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import type { AdapterProfile, Device, PooledTexture } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { type ConvGeometry, type ConvPlan, convParams, convParamsWgsl } from './convGeometry.ts';
import { UniformWriter, grid1d, WG, FLAT_INDEX, isSoftwareAdapter } from './common.ts';
import {
  conv2dForwardTexture,
  conv2dGradInputTexture,
  conv2dGradWeightTexture,
  gradWeightSlicesTexture,
  type ConvGradInputFusion,
  type PackedGradOutput,
  useTextureConv,
} from './conv2dTexture.ts';
import { conv2dForwardLarge, conv2dGradInputLarge, conv2dGradWeightLarge } from './conv2dLarge.ts';
import type { InputPrologue } from './conv2dRows.ts';

const BN = 64;
const BK = 16;


function unrollFor(device: Device): boolean {
  if (device.policy.conv.unroll !== 'auto') return device.policy.conv.unroll;
  return !isSoftwareAdapter(device);
}

/** 1×1 and 3×3 kernels get KH, KW as constants; other sizes share one kernel reading them from the uniforms. */
function specialised(kh: number, kw: number): boolean {
  return (kh === 1 && kw === 1) || (kh === 3 && kw === 3);
}

/** The kernel-size part of a pipeline key and label. */
function sizeKey(kh: number, kw: number): string {
  return specialised(kh, kw) ? `${kh}×${kw}` : 'KH×KW';
}

// Declares KH, KW, KHW inside main when they are not module constants.
function kernelSizeLets(kh: number, kw: number): string {
  return specialised(kh, kw) ? '' : 'let KH = p.kh; let KW = p.kw; let KHW = KH * KW;';
}

/** Rows of each thread's register block: 8×4 in 64-row tiles (128 threads), 4×4 otherwise. */
function threadRows(BM: number): 4 | 8 {
  return BM === 64 ? 8 : 4;
}

/** Rows of the GEMM tile, from the GEMM's M (16-, 32- and 64-row tiles). */
function tileRows(M: number): 16 | 32 | 64 {
  return M <= 16 ? 16 : M <= 32 ? 32 : 64;
}

export type { ConvGeometry } from './convGeometry.ts';

/** Output size of a convolution or pooling window along one axis (floor mode). */
export function outSize(input: number, kernel: number, stride: number, pad: number): number {
  return Math.floor((input + 2 * pad - kernel) / stride) + 1;
}

// the uniform block every buffer conv kernel reads (convGeometry.ts)
const PARAMS = convParamsWgsl('zero');

// Constants and the register-block product every GEMM kernel here shares.
/**
 * A constant loop bound, or the same bound made opaque (p.zero is always 0) so the
 * shader compiler does not unroll the loop: lavapipe's LLVM takes 3-7 s per fully
 * unrolled kernel and about 0.5 s otherwise, at much the same speed, while a GPU
 * compiler needs the unrolled form to keep the tile in registers.
 */
function boundOf(unroll: boolean): (n: string) => string {
  return (n) => (unroll ? n : `(p.zero + ${n})`);
}

function tileConsts(BM: number, TM: number, kh: number, kw: number, unroll: boolean): string {
  const L = boundOf(unroll);
  const rows = Array.from({ length: TM / 4 }, (_, r) => r);
  return /* wgsl */ `
const BM = ${BM}u;
const BN = ${BN}u;
const BK = ${BK}u;
const TM = ${TM}u;
const THREADS = ${(BM / TM) * 16}u;
${specialised(kh, kw) ? `const KH = ${kh}u;\nconst KW = ${kw}u;\nconst KHW = ${kh * kw}u;` : ''}
// As[k][m] and Bs[k][n], read back four at a time
var<workgroup> As: array<vec4<f32>, ${(BK * BM) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(BK * BN) / 4}>;

fn storeA(k: u32, m: u32, v: f32) { As[(k * BM + m) / 4u][m % 4u] = v; }
fn storeB(k: u32, n: u32, v: f32) { Bs[(k * BN + n) / 4u][n % 4u] = v; }

// acc[i] holds row (ty·TM + i) of the thread's block, columns tx·4 .. tx·4+3
fn multiplyTile(acc: ptr<function, array<vec4<f32>, ${TM}>>, tx: u32, ty: u32) {
  for (var k = 0u; k < ${L('BK')}; k++) {
    let b = Bs[k * (BN / 4u) + tx];
${rows
  .map(
    (r) => `    let a${r} = As[k * (BM / 4u) + ty * (TM / 4u) + ${r}u];
    (*acc)[${4 * r}] = fma(vec4<f32>(a${r}.x), b, (*acc)[${4 * r}]);
    (*acc)[${4 * r + 1}] = fma(vec4<f32>(a${r}.y), b, (*acc)[${4 * r + 1}]);
    (*acc)[${4 * r + 2}] = fma(vec4<f32>(a${r}.z), b, (*acc)[${4 * r + 2}]);
    (*acc)[${4 * r + 3}] = fma(vec4<f32>(a${r}.w), b, (*acc)[${4 * r + 3}]);`,
  )
  .join('\n')}
  }
}`;
}

// ------------------------------------------------------------------ forward

function forwardSource(BM: number, TM: number, kh: number, kw: number, hasBias: boolean, unroll: boolean): string {
  const L = boundOf(unroll);
  return wgsl`
${PARAMS}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#if ${hasBias}
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif
${tileConsts(BM, TM, kh, kw, unroll)}

@compute @workgroup_size(16, ${BM / TM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  ${kernelSizeLets(kh, kw)}
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let hwo = p.ho * p.wo;
  // This thread always loads the same im2col column: the output pixel n.
  let col = li % BN;
  let n = n0 + col;
  let nOk = n < p.N;
  let pix = n % hwo;
  let ih0 = i32((pix / p.wo) * p.strideH) - i32(p.padH);
  let iw0 = i32((pix % p.wo) * p.strideW) - i32(p.padW);
  let xBase = (n / hwo) * p.cin * p.h * p.w;
  let h = i32(p.h);
  let w = i32(p.w);

  var acc: array<vec4<f32>, ${TM}>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    // A = W as stored (M×K row-major): consecutive threads read consecutive k
    for (var j = 0u; j < ${L('BM * BK / THREADS')}; j++) {
      let idx = li + j * THREADS;
      let r = idx / BK;
      let c = idx % BK;
      let m = m0 + r;
      let k = k0 + c;
      var v = 0.0;
      if (m < p.M && k < p.K) { v = Wt[m * p.K + k]; }
      storeA(c, r, v);
    }
    // B = im2col(X): k = (ci, kh, kw) of this thread's column
    for (var j = 0u; j < ${L('BK * BN / THREADS')}; j++) {
      let row = li / BN + j * (THREADS / BN);
      let k = k0 + row;
      let tap = k % KHW;
      let ih = ih0 + i32(tap / KW);
      let iw = iw0 + i32(tap % KW);
      var v = 0.0;
      if (nOk && k < p.K && ih >= 0 && ih < h && iw >= 0 && iw < w) {
        v = X[xBase + ((k / KHW) * p.h + u32(ih)) * p.w + u32(iw)];
      }
      storeB(row, col, v);
    }
    workgroupBarrier();
    multiplyTile(&acc, lid.x, lid.y);
    workgroupBarrier();
  }

  var yOff: array<u32, 4>;
  for (var jj = 0u; jj < 4u; jj++) {
    let nn = n0 + lid.x * 4u + jj;
    yOff[jj] = (nn / hwo) * p.cout * hwo + nn % hwo;
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + lid.y * TM + i;
    if (m >= p.M) { break; }
#if ${hasBias}
    let b = bias[m];
#else
    let b = 0.0;
#endif
    for (var jj = 0u; jj < 4u; jj++) {
      if (n0 + lid.x * 4u + jj < p.N) { Y[yOff[jj] + m * hwo] = acc[i][jj] + b; }
    }
  }
}`;
}

/** Records Y = conv2d(X, W) (+ bias). Shapes are the caller's to check. */
/** Records y = conv2d(x, weight) + bias with the kernel `plan` names (kernels/convPlan.ts). */
export function conv2dForward(
  device: Device, x: Operand, weight: Operand, bias: Operand | undefined, y: Operand, g: ConvGeometry, plan: ConvPlan, keepInput = false, stats?: Operand, prologue?: InputPrologue,
): PooledTexture | undefined {
  // prologue: x is a training batchnorm's input, normalised and relu'd as the row kernel loads it (plan.inputPrologue)
  if (prologue && !plan.inputPrologue) throw new Error('conv2dForward: this plan takes no batchnorm + relu prologue (plan.inputPrologue is false)');
  if (plan.forward === 'large') {
    if (stats) throw new Error('conv2dForward: the large-tile kernel computes no batchnorm statistics');
    conv2dForwardLarge(device, x, weight, bias, y, g, plan.tiles!.forward!);
    return undefined;
  }
  // stats: batchnorm statistics partials of y from the row kernel's epilogue (plan.forwardStatistics)
  if (plan.forward !== 'buffer') return conv2dForwardTexture(device, x, weight, bias, y, g, plan, keepInput, stats, prologue);
  if (stats) throw new Error('conv2dForward: the buffer kernel computes no batchnorm statistics');
  const M = g.cout;
  const N = g.batch * g.ho * g.wo;
  const K = g.cin * g.kh * g.kw;
  const BM = tileRows(M);
  const TM = threadRows(BM);
  const hasBias = bias !== undefined;
  const unroll = unrollFor(device);
  const pipeline = device.pipeline(`conv2d:${BM}x${TM}:${sizeKey(g.kh, g.kw)}:${hasBias}:${unroll}`, `conv2d ${sizeKey(g.kh, g.kw)} (BM ${BM}${hasBias ? ', +bias' : ''})`, () =>
    forwardSource(BM, TM, g.kh, g.kw, hasBias, unroll),
  );
  const bindings: (GPUBuffer | GPUBufferBinding)[] = [x.buffer, weight.buffer, y.buffer, device.uniforms(convParams(g, M, N, K))];
  if (bias) bindings.push(bias.buffer);
  device.dispatch(pipeline, bindings, [Math.ceil(N / BN), Math.ceil(M / BM), 1]);
  return undefined;
}

// --------------------------------------------------------------- grad input

function gradInputSource(BM: number, TM: number, kh: number, kw: number, unroll: boolean, accumulate: boolean): string {
  const L = boundOf(unroll);
  return /* wgsl */ `
${PARAMS}
@group(0) @binding(0) var<storage, read> dY: array<f32>;
@group(0) @binding(1) var<storage, read> Wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> dX: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${tileConsts(BM, TM, kh, kw, unroll)}

@compute @workgroup_size(16, ${BM / TM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  ${kernelSizeLets(kh, kw)}
  let sh = p.strideH;
  let sw = p.strideW;
  // The phase (rh, rw): input pixels with (ih + padH) mod sh = rh (and likewise w),
  // reached only by the taps kh = rh + th·sh (th = 0 .. nkh-1), from the output row
  // oh = baseH + i − th where ih = ih0 + i·sh.
  let rh = wid.z / sw;
  let rw = wid.z % sw;
  let ih0 = (rh + sh - p.padH % sh) % sh;
  let iw0 = (rw + sw - p.padW % sw) % sw;
  let hph = select(0u, (p.h - ih0 + sh - 1u) / sh, ih0 < p.h);
  let wph = select(0u, (p.w - iw0 + sw - 1u) / sw, iw0 < p.w);
  let nkh = select(0u, (KH - rh + sh - 1u) / sh, rh < KH);
  let nkw = select(0u, (KW - rw + sw - 1u) / sw, rw < KW);
  let baseH = (ih0 + p.padH - rh) / sh;
  let baseW = (iw0 + p.padW - rw) / sw;
  let taps = nkh * nkw;
  let phasePix = hph * wph;
  let N = p.batch * phasePix;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let hwo = p.ho * p.wo;

  // This thread always loads the same column: input pixel n of the phase.
  let col = li % BN;
  let n = n0 + col;
  let nOk = n < N;
  let pix = n % max(phasePix, 1u);
  let ohb = i32(baseH + pix / max(wph, 1u));
  let owb = i32(baseW + pix % max(wph, 1u));
  let dyBase = (n / max(phasePix, 1u)) * p.cout * hwo;
  let ho = i32(p.ho);
  let wo = i32(p.wo);

  // K runs tap-major: for each of the phase's taps (uniform, one division each),
  // Cout in slices of BK. Nothing in the loads divides by a runtime value, and this
  // thread's dY pixel and its bounds check are per tap, not per element.
  var acc: array<vec4<f32>, ${TM}>;
  for (var t = 0u; t < taps; t++) {
    let th = t / nkw;
    let tw = t % nkw;
    let wTap = (rh + th * sh) * KW + rw + tw * sw;
    let oh = ohb - i32(th);
    let ow = owb - i32(tw);
    let colOk = nOk && oh >= 0 && oh < ho && ow >= 0 && ow < wo;
    let dyPix = dyBase + u32(max(oh, 0)) * p.wo + u32(max(ow, 0));
    for (var co0 = 0u; co0 < p.cout; co0 += BK) {
      // A[ci][co] = W[co, ci, kh, kw] of this tap
      for (var j = 0u; j < ${L('BM * BK / THREADS')}; j++) {
        let idx = li + j * THREADS;
        let r = idx / BK;
        let c = idx % BK;
        let m = m0 + r;
        let co = co0 + c;
        var v = 0.0;
        if (m < p.M && co < p.cout) { v = Wt[(co * p.cin + m) * KHW + wTap]; }
        storeA(c, r, v);
      }
      // B[co][pixel] = dY[n, co, oh, ow]
      for (var j = 0u; j < ${L('BK * BN / THREADS')}; j++) {
        let row = li / BN + j * (THREADS / BN);
        let co = co0 + row;
        var v = 0.0;
        if (colOk && co < p.cout) { v = dY[dyPix + co * hwo]; }
        storeB(row, col, v);
      }
      workgroupBarrier();
      multiplyTile(&acc, lid.x, lid.y);
      workgroupBarrier();
    }
  }

  // Every pixel of the phase is written, zero when no tap reaches it (K = 0).
  var xOff: array<u32, 4>;
  for (var jj = 0u; jj < 4u; jj++) {
    let nn = n0 + lid.x * 4u + jj;
    let q = nn % max(phasePix, 1u);
    let ih = ih0 + (q / max(wph, 1u)) * sh;
    let iw = iw0 + (q % max(wph, 1u)) * sw;
    xOff[jj] = (nn / max(phasePix, 1u)) * p.cin * p.h * p.w + ih * p.w + iw;
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + lid.y * TM + i;
    if (m >= p.M) { break; }
    for (var jj = 0u; jj < 4u; jj++) {
      if (n0 + lid.x * 4u + jj < N) { dX[xOff[jj] + m * p.h * p.w] ${accumulate ? '+=' : '='} acc[i][jj]; }
    }
  }
}`;
}

/** Records dX = ∂(conv2d)/∂X applied to dY (`fused`: what the row kernels share or add into, conv2dTexture.ts). */
export function conv2dGradInput(device: Device, dy: Operand, weight: Operand, dx: Operand, g: ConvGeometry, plan: ConvPlan, shared?: PackedGradOutput, fused: ConvGradInputFusion = {}): void {
  // what a kernel can fuse is the plan's to say, for every path
  if (fused.accumulate && !plan.gradInputAccumulates) throw new Error(`conv2dGradInput: this plan (${plan.gradInput} kernel) cannot add into dX (plan.gradInputAccumulates is false)`);
  if (fused.bn && !plan.gradInputBatchNorm) throw new Error(`conv2dGradInput: this plan (${plan.gradInput} kernel) cannot fold a batchnorm's backward in (plan.gradInputBatchNorm is false)`);
  if (plan.gradInput !== 'buffer' && plan.gradInput !== 'large') return conv2dGradInputTexture(device, dy, weight, dx, g, plan, shared, fused);
  const accumulate = fused.accumulate ?? false;
  if (plan.gradInput === 'large') return conv2dGradInputLarge(device, dy, weight, dx, g, plan.tiles!.gradInput!, 'f32', accumulate);
  const M = g.cin;
  const BM = tileRows(M);
  const TM = threadRows(BM);
  const unroll = unrollFor(device);
  const pipeline = device.pipeline(`conv2d gradInput:${BM}x${TM}:${sizeKey(g.kh, g.kw)}:${unroll}:${accumulate}`, `conv2d grad input ${sizeKey(g.kh, g.kw)} (BM ${BM}${accumulate ? ', add into' : ''})`, () =>
    gradInputSource(BM, TM, g.kh, g.kw, unroll, accumulate),
  );
  // the largest phase has ceil(H/s)·ceil(W/s) pixels
  const maxN = g.batch * Math.ceil(g.h / g.strideH) * Math.ceil(g.w / g.strideW);
  const u = device.uniforms(convParams(g, M, 0, 0));
  device.dispatch(pipeline, [dy.buffer, weight.buffer, dx.buffer, u], [Math.ceil(maxN / BN), Math.ceil(M / BM), g.strideH * g.strideW]);
}

// -------------------------------------------------------------- grad weight

function gradWeightSource(BM: number, TM: number, kh: number, kw: number, unroll: boolean): string {
  const L = boundOf(unroll);
  return /* wgsl */ `
${PARAMS}
@group(0) @binding(0) var<storage, read> dY: array<f32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
${tileConsts(BM, TM, kh, kw, unroll)}
const NB = ${(BN * BK) / ((BM / TM) * 16)}u; // B elements each thread loads per slice

@compute @workgroup_size(16, ${BM / TM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  ${kernelSizeLets(kh, kw)}
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let kBegin = wid.z * p.kChunk;
  let kEnd = min(p.K, kBegin + p.kChunk);
  let hwo = p.ho * p.wo;
  let hw = p.h * p.w;
  let h = i32(p.h);
  let w = i32(p.w);
  // Consecutive threads take consecutive k (output pixels: contiguous in dY and,
  // at stride 1, in X); each thread's filter taps n stay fixed for the whole loop.
  let kc = li % BK;
  var tapOff: array<u32, NB>;
  var tapH: array<i32, NB>;
  var tapW: array<i32, NB>;
  var tapOk: array<bool, NB>;
  for (var j = 0u; j < ${L('NB')}; j++) {
    let n = n0 + li / BK + j * (THREADS / BK);
    let t = n % KHW;
    tapOk[j] = n < p.N;
    tapOff[j] = (n / KHW) * hw;
    tapH[j] = i32(t / KW) - i32(p.padH);
    tapW[j] = i32(t % KW) - i32(p.padW);
  }

  var acc: array<vec4<f32>, ${TM}>;
  for (var k0 = kBegin; k0 < kEnd; k0 += BK) {
    let k = k0 + kc;
    let kOk = k < kEnd;
    let b = k / hwo;
    let q = k % hwo;
    let oh = q / p.wo;
    let ow = q % p.wo;
    let ihb = i32(oh * p.strideH);
    let iwb = i32(ow * p.strideW);
    let dyBase = b * p.cout * hwo + q;
    let xBase = b * p.cin * hw;
    // A[co][k] = dY[b, co, oh, ow]
    for (var j = 0u; j < ${L('BM * BK / THREADS')}; j++) {
      let r = li / BK + j * (THREADS / BK);
      let m = m0 + r;
      var v = 0.0;
      if (kOk && m < p.M) { v = dY[dyBase + m * hwo]; }
      storeA(kc, r, v);
    }
    // B[k][(ci, kh, kw)] = X[b, ci, oh·s − p + kh, ow·s − p + kw]
    for (var j = 0u; j < ${L('NB')}; j++) {
      let r = li / BK + j * (THREADS / BK);
      let ih = ihb + tapH[j];
      let iw = iwb + tapW[j];
      var v = 0.0;
      if (kOk && tapOk[j] && ih >= 0 && ih < h && iw >= 0 && iw < w) {
        v = X[xBase + tapOff[j] + u32(ih) * p.w + u32(iw)];
      }
      storeB(kc, r, v);
    }
    workgroupBarrier();
    multiplyTile(&acc, lid.x, lid.y);
    workgroupBarrier();
  }

  let outBase = wid.z * p.M * p.N;
  for (var i = 0u; i < TM; i++) {
    let m = m0 + lid.y * TM + i;
    if (m >= p.M) { break; }
    for (var jj = 0u; jj < 4u; jj++) {
      let n = n0 + lid.x * 4u + jj;
      if (n < p.N) { out[outBase + m * p.N + n] = acc[i][jj]; }
    }
  }
}`;
}

const sumSplitsSource = /* wgsl */ `
const WG = ${WG}u;
struct Params { n: u32, splits: u32 }
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var z = 0u; z < p.splits; z++) { s += parts[z * p.n + i]; }
  out[i] = s;
}`;

/** Workgroups the split-K grad-weight kernel aims for (a few per SM on a discrete GPU). */
const WGRAD_TARGET_WORKGROUPS = 256;
/** Shortest K range worth a workgroup of its own. */
const WGRAD_MIN_CHUNK = 512;
/** Cap on the partial-product buffer. */
const WGRAD_MAX_PARTIAL_BYTES = 64 << 20;

/** How the grad-weight GEMM's K = batch·Ho·Wo is split across workgroups (partial products to sum). */
export function gradWeightSplits(g: ConvGeometry, device: AdapterProfile): { splits: number; chunk: number } {
  if (useTextureConv(device, g)) return { splits: gradWeightSlicesTexture(device, g).slices, chunk: 0 };
  const M = g.cout;
  const N = g.cin * g.kh * g.kw;
  const K = g.batch * g.ho * g.wo;
  const tiles = Math.ceil(M / tileRows(M)) * Math.ceil(N / BN);
  let splits = Math.ceil(WGRAD_TARGET_WORKGROUPS / tiles);
  splits = Math.min(splits, Math.floor(K / WGRAD_MIN_CHUNK), Math.floor(WGRAD_MAX_PARTIAL_BYTES / (4 * M * N)));
  splits = Math.max(1, splits);
  const chunk = Math.ceil(Math.ceil(K / splits) / BK) * BK;
  return { splits: Math.ceil(K / chunk), chunk };
}

/**
 * Records dW = ∂(conv2d)/∂W applied to dY. `scratch` must hold splits·|W|
 * floats when gradWeightSplits(g, device).splits > 1 (ignored otherwise).
 */
export function conv2dGradWeight(
  device: Device,
  dy: Operand,
  x: Operand,
  dw: Operand,
  g: ConvGeometry,
  plan: ConvPlan,
  scratch?: Operand,
  shared?: PackedGradOutput,
  xTex?: PooledTexture,
  rawDy?: PooledTexture,
  prologue?: InputPrologue,
): void {
  if (prologue && !plan.inputPrologue) throw new Error('conv2dGradWeight: this plan takes no batchnorm + relu prologue (plan.inputPrologue is false)');
  const M = g.cout;
  const N = g.cin * g.kh * g.kw;
  const K = g.batch * g.ho * g.wo;
  const BM = tileRows(M);
  const TM = threadRows(BM);
  const { splits, chunk } = gradWeightSplits(g, device);
  if (splits > 1 && (!scratch || scratch.size < splits * M * N)) {
    throw new Error(`conv2dGradWeight: split-K over ${splits} parts needs a scratch tensor of ${splits * M * N} floats`);
  }
  const target = splits > 1 ? scratch! : dw;
  if (plan.gradWeight === 'large') {
    conv2dGradWeightLarge(device, dy, x, target, g, plan.tiles!.gradWeight!, splits, chunk);
  } else if (plan.gradWeight !== 'buffer') {
    conv2dGradWeightTexture(device, dy, x, target, g, plan, shared, xTex, rawDy, prologue);
  } else {
    const unroll = unrollFor(device);
    const pipeline = device.pipeline(`conv2d gradWeight:${BM}x${TM}:${sizeKey(g.kh, g.kw)}:${unroll}`, `conv2d grad weight ${sizeKey(g.kh, g.kw)} (BM ${BM})`, () =>
      gradWeightSource(BM, TM, g.kh, g.kw, unroll),
    );
    const u = device.uniforms(convParams(g, M, N, K, chunk));
    device.dispatch(pipeline, [dy.buffer, x.buffer, target.buffer, u], [Math.ceil(N / BN), Math.ceil(M / BM), splits]);
  }
  if (splits > 1) {
    const sum = device.pipeline('conv2d sumSplits', 'conv2d grad weight split-K sum', () => sumSplitsSource);
    const us = device.uniforms(new UniformWriter().u32(M * N, splits).bytes());
    device.dispatch(sum, [scratch!.buffer, dw.buffer, us], grid1d(M * N));
  }
}

