// Matmul for software adapters with subgroups of 8 lanes (lavapipe on AVX2): the
// operands are repacked into rgba32float storage textures (a read-only storage
// texture load costs a quarter to a half of a buffer load there; see
// kernels/conv2dTexture.ts) and each subgroup shares its rows of A with
// subgroupBroadcast, so A costs one texel load per lane per 4 k for 8 rows.
//
//   pack       op(A) [M, K] → texel (k/4, m) = A[m, k..k+3], one layer per batch entry.
//              op(B) [K, N] is stored panel-major: the 64 columns a workgroup reads
//              form one layer per batch entry (layer panel·batch + b), texel
//              (c, k) = B[k, 64·panel + 4c .. +3], so a workgroup streams its panel
//              linearly through k (row-major B has the 256 bytes it needs of each
//              k in a different 4 KB row: measured 1.15-1.3× slower). Zero-padded to
//              the kernel's block (M to ROWS, N to 64, K to 4), so the loop has no
//              bounds checks; transposes are handled here, not in the kernel.
//              Row-major operands whose rows are whole 256-byte copy rows (K, N
//              multiples of 64) are copied instead (copyBufferToTexture, one copy per
//              panel of B), leaving only A's rows past M unpadded.
//   multiply   workgroup 8×4 lanes; each subgroup (8 lanes along n) owns TM rows of C
//              (16 or 32), each lane 8 columns (two vec4): per 4 k, TM/8 texels of A,
//              8 of B, 4·TM broadcasts, 8·TM vec4 multiply-adds chained 4 to a write.
//
// 1024³ on lavapipe (bench/experiments/matmul-texture.ts, GFLOP per CPU-second
// against the FMA loop's): direct buffer 4×8 kernel 13-16%, 8×8 per lane unchained
// 34-36%, 16×8 chained with row-major B 50-60%, this kernel 63-79%.
import type { AdapterProfile, Device, PooledTexture } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { UniformWriter } from './common.ts';
import type { MatmulOptions } from './matmulOptions.ts';

const XYZW = ['x', 'y', 'z', 'w'];
const SUBGROUPS = 4; // subgroups per workgroup (its rows, local_invocation_id.y)
const COLS = 64; // columns of C per workgroup (8 lanes × 8) = one panel of B
const PANEL_TEXELS = COLS / 4;

/** Rows of C per subgroup: 32 where M fills the larger block (fewer B loads per multiply-add), else 16. */
const rowsPerSubgroup = (M: number): 16 | 32 => (M >= 32 * SUBGROUPS ? 32 : 16);

// Packs element(r, c) = S[b·batchStride + r·rs + c·cs] into texel column tx, row r of
// batch entry b; panelled (B): texel (tx mod 16, r) of layer (tx / 16)·batch + b.
const packSource = /* wgsl */ `
struct P { rows: u32, cols: u32, rs: u32, cs: u32, batchStride: u32, tw: u32, batch: u32, panelled: u32 }
@group(0) @binding(0) var<storage, read> S: array<f32>;
@group(0) @binding(1) var T: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tx = gid.x;
  let r = gid.y;
  if (tx >= p.tw) { return; }
  var v = vec4<f32>();
  if (r < p.rows) {
    let base = gid.z * p.batchStride + r * p.rs;
    for (var j = 0u; j < 4u; j++) {
      let c = tx * 4u + j;
      if (c < p.cols) { v[j] = S[base + c * p.cs]; }
    }
  }
  if (p.panelled == 1u) {
    textureStore(T, vec2<u32>(tx % ${PANEL_TEXELS}u, r), (tx / ${PANEL_TEXELS}u) * p.batch + gid.z, v);
  } else {
    textureStore(T, vec2<u32>(tx, r), gid.z, v);
  }
}`;

const pad = (x: number, m: number): number => Math.ceil(x / m) * m;

interface MatrixView {
  src: Operand;
  /** element (r, c) of batch entry b is src[b·rows·cols + r·rs + c·cs] */
  rows: number;
  cols: number;
  rs: number;
  cs: number;
  batch: number;
  rowsPad: number;
  colsPad: number;
}

/** Whether the operand is row-major with rows that are whole 256-byte copy rows (and whole panels). */
const copyable = (o: MatrixView): boolean => o.cs === 1 && o.rs === o.cols && o.cols === o.colsPad && o.cols % COLS === 0;

/**
 * A: texel (k/4, m) of layer b. A copy leaves the rows past M undefined; they only
 * make rows of C that are not stored.
 */
function packA(device: Device, o: MatrixView): PooledTexture {
  const tw = o.colsPad / 4;
  const t = device.acquireTexture(tw, o.rowsPad, o.batch);
  if (copyable(o)) device.copyToTexture(o.src.buffer, t, tw, o.rows, o.batch);
  else packKernel(device, o, t, false);
  return t;
}

/**
 * B, panel-major: layer panel·batch + b holds columns 64·panel … +63 of batch entry b,
 * texel (c, k). Copied only where K needs no zero rows (they would be summed in).
 */
function packB(device: Device, o: MatrixView): PooledTexture {
  const panels = o.colsPad / COLS;
  const t = device.acquireTexture(PANEL_TEXELS, o.rowsPad, panels * o.batch);
  if (copyable(o) && o.rows === o.rowsPad) {
    for (let panel = 0; panel < panels; panel++) {
      device.copyToTexture(o.src.buffer, t, PANEL_TEXELS, o.rows, o.batch, { offset: panel * COLS * 4, bytesPerRow: o.cols * 4, toLayer: panel * o.batch });
    }
  } else {
    packKernel(device, o, t, true);
  }
  return t;
}

function packKernel(device: Device, o: MatrixView, t: PooledTexture, panelled: boolean): void {
  const tw = o.colsPad / 4;
  const pipeline = device.pipeline('matmul tex:pack', 'matmul texture pack', () => packSource);
  const u = device.uniforms(new UniformWriter().u32(o.rows, o.cols, o.rs, o.cs, o.rows * o.cols, tw, o.batch, panelled ? 1 : 0).bytes());
  device.dispatch(pipeline, [o.src.buffer, t.view, u], [Math.ceil(tw / 64), o.rowsPad, o.batch]);
}

export function multiplySource(TM: number, hasBias: boolean): string {
  const acc: string[] = [];
  for (let i = 0; i < TM; i++) for (let q = 0; q < 2; q++) acc.push(`var c${i}_${q} = vec4<f32>();`);
  const body: string[] = [];
  for (let g = 0; g < TM / 8; g++) body.push(`let ag${g} = textureLoad(A, vec2<u32>(kq, m0 + ${8 * g}u + sg), la);`);
  for (let kk = 0; kk < 4; kk++) for (let q = 0; q < 2; q++) body.push(`let b${kk}_${q} = textureLoad(B, vec2<u32>(nl + ${q}u, k + ${kk}u), lb);`);
  for (let kk = 0; kk < 4; kk++) for (let i = 0; i < TM; i++) body.push(`let s${kk}_${i} = vec4<f32>(subgroupBroadcast(ag${i >> 3}.${XYZW[kk]}, ${i & 7}u));`);
  // one write per accumulator per 4 k: llvmpipe blends every loop-carried write with
  // the loop mask, so four separate statements cost four blends (measured 1.5× slower)
  for (let i = 0; i < TM; i++) {
    for (let q = 0; q < 2; q++) {
      let e = `c${i}_${q}`;
      for (let kk = 0; kk < 4; kk++) e = `fma(s${kk}_${i}, b${kk}_${q}, ${e})`;
      body.push(`c${i}_${q} = ${e};`);
    }
  }
  const stores: string[] = [];
  for (let i = 0; i < TM; i++) {
    for (let q = 0; q < 2; q++) {
      for (let c = 0; c < 4; c++) {
        const col = `n0 + ${4 * q + c}u`;
        stores.push(`if (m0 + ${i}u < p.M && ${col} < p.N) { C[cb + (m0 + ${i}u) * p.N + ${col}] = c${i}_${q}.${XYZW[c]}${hasBias ? ` + bias[${col}]` : ''}; }`);
      }
    }
  }
  return /* wgsl */ `enable subgroups;
struct P { M: u32, N: u32, K4: u32, batchA: u32, batchB: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var A: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var B: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${hasBias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
@compute @workgroup_size(8, ${SUBGROUPS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(subgroup_invocation_id) sg: u32) {
  let m0 = (wid.y * ${SUBGROUPS}u + lid.y) * ${TM}u;
  let nl = lid.x * 2u; // the lane's first texel in the panel
  let n0 = wid.x * ${COLS}u + nl * 4u;
  let la = select(0u, wid.z, p.batchA > 1u);
  let lb = wid.x * p.batchB + select(0u, wid.z, p.batchB > 1u);
  let cb = wid.z * p.M * p.N;
  ${acc.join(' ')}
  for (var kq = 0u; kq < p.K4; kq++) {
    let k = kq * 4u;
    ${body.join('\n    ')}
  }
  ${stores.join('\n  ')}
}`;
}

/** Whether this product's textures and grids fit the device's limits (else the direct kernel runs). */
export function matmulTextureFits(device: AdapterProfile, o: Pick<MatmulOptions, 'M' | 'N' | 'K' | 'batch' | 'batchA' | 'batchB'>): boolean {
  const l = device.limits;
  const Mp = pad(o.M, rowsPerSubgroup(o.M) * SUBGROUPS);
  const Np = pad(o.N, COLS);
  const Kp = pad(o.K, 4);
  const dim = l.maxTextureDimension2D;
  const grid = l.maxComputeWorkgroupsPerDimension;
  return (
    Kp / 4 <= dim && Mp <= dim && Kp <= dim &&
    o.batchA <= l.maxTextureArrayLayers && (Np / COLS) * o.batchB <= l.maxTextureArrayLayers &&
    Math.max(Mp, Kp, o.batch) <= grid // pack rows and batch, multiply batch
  );
}

/**
 * Records C = op(A)·op(B) (+ bias) through textures. Needs subgroups of exactly 8
 * lanes that are the rows (local_invocation_id.y) of the 8×4 workgroup, as on
 * lavapipe, where alone it is chosen.
 */
export function matmulTexture(device: Device, a: Operand, b: Operand, c: Operand, o: MatmulOptions): void {
  const { M, N, K } = o;
  const TM = rowsPerSubgroup(M);
  const rowsPerGroup = TM * SUBGROUPS;
  const Mp = pad(M, rowsPerGroup);
  const Np = pad(N, COLS);
  const Kp = pad(K, 4);
  // op(A)[m, k]: A stored [M, K] (rs K, cs 1) or, transposed, [K, M] (rs 1, cs M)
  const at = packA(device, { src: a, rows: M, cols: K, rs: o.transA ? 1 : K, cs: o.transA ? M : 1, batch: o.batchA, rowsPad: Mp, colsPad: Kp });
  // op(B)[k, n]: B stored [K, N] (rs N, cs 1) or, transposed, [N, K] (rs 1, cs K)
  const bt = packB(device, { src: b, rows: K, cols: N, rs: o.transB ? 1 : N, cs: o.transB ? K : 1, batch: o.batchB, rowsPad: Kp, colsPad: Np });
  const hasBias = o.bias !== undefined;
  const pipeline = device.pipeline(`matmul tex:multiply:${TM}:${hasBias}`, `matmul texture ${TM}×8 subgroup${hasBias ? ' +bias' : ''}`, () => multiplySource(TM, hasBias));
  const u = device.uniforms(new UniformWriter().u32(M, N, Kp / 4, o.batchA, o.batchB, 0, 0, 0).bytes());
  const bindings = [at.view, bt.view, c.buffer, u];
  if (o.bias) bindings.push(o.bias.buffer);
  device.dispatch(pipeline, bindings, [Np / COLS, Mp / rowsPerGroup, o.batch]);
  device.releaseTexture(at);
  device.releaseTexture(bt);
}
