// Matmul for software adapters with subgroups of 8 lanes (lavapipe on AVX2): the
// operands are repacked into rgba32float storage textures (a read-only storage
// texture load costs a quarter to a half of a buffer load there; see
// kernels/conv2dTexture.ts) and each subgroup shares its rows of A with
// subgroupBroadcast, so A costs one texel load per lane per 4 k for 8 rows.
//
//   pack       op(A) [M, K] → texel (k/4, m) = A[m, k..k+3]; op(B) [K, N] → texel
//              (n/4, k) = B[k, n..n+3]; one layer per batch entry; zero-padded to
//              the kernel's block (M, N to 64, K to 4), so the loop has no bounds
//              checks; transposes are handled here, not in the kernel. Row-major
//              operands with K (A) or N (B) a multiple of 64 are copied instead
//              (copyBufferToTexture), leaving only A's rows past M unpadded.
//   multiply   workgroup 8×4 lanes; each subgroup (8 lanes along n) owns 16 rows of
//              C, each lane 8 columns (two vec4): per 4 k, 2 texels of A, 8 of B,
//              64 broadcasts, 128 vec4 multiply-adds chained 4 to a write.
//
// 512³ on lavapipe (bench/experiments/matmul-texture.ts, GFLOP per CPU-second,
// FMA loop 34-41): direct buffer 4×8 kernel 4.8 (13%), 8×8 per lane unchained
// 13.2-14.3 (34-36%), this kernel 16-21 at 1024³ (46-58%).
import type { Device } from '../engine/device.ts';
import type { Tensor } from '../engine/tensor.ts';
import { UniformWriter } from './common.ts';
import type { MatmulOptions } from './matmul.ts';

const XYZW = ['x', 'y', 'z', 'w'];
const TM = 16; // rows of C per subgroup (shared by its 8 lanes)
const ROWS = 64; // rows of C per workgroup (4 subgroups × 16)
const COLS = 64; // columns of C per workgroup (8 lanes × 8)

const packSource = /* wgsl */ `
struct P { rows: u32, cols: u32, rs: u32, cs: u32, batchStride: u32, tw: u32, th: u32, _p: u32 }
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
  textureStore(T, vec2<u32>(tx, r), gid.z, v);
}`;

const pad = (x: number, m: number): number => Math.ceil(x / m) * m;

/**
 * Packs the rows × cols matrix element(r, c) = src[b·batchStride + r·rs + c·cs] of each
 * batch entry. Where src already has the texture's layout (row-major, cols a multiple
 * of 64 so a row is a whole number of 256-byte copy rows) it is copied instead, which
 * leaves the texture's padding rows undefined: `padRowsUnread` says the multiply never
 * lets them reach a stored result (rows of A past M only make rows of C that are not
 * stored; rows of B past K would be summed in).
 */
function pack(device: Device, src: Tensor, rows: number, cols: number, rs: number, cs: number, batch: number, rowsPad: number, colsPad: number, padRowsUnread: boolean) {
  const tw = colsPad / 4;
  const t = device.acquireTexture(tw, rowsPad, batch);
  if (cs === 1 && rs === cols && cols === colsPad && cols % 64 === 0 && (padRowsUnread || rows === rowsPad)) {
    device.copyToTexture(src.buffer, t, tw, rows, batch);
    return t;
  }
  const pipeline = device.pipeline('matmul tex:pack', 'matmul texture pack', () => packSource);
  const u = device.uniforms(new UniformWriter().u32(rows, cols, rs, cs, rows * cols, tw, rowsPad, 0).bytes());
  device.dispatch(pipeline, [src.buffer, t.view, u], [Math.ceil(tw / 64), rowsPad, batch]);
  return t;
}

function multiplySource(hasBias: boolean): string {
  const acc: string[] = [];
  for (let i = 0; i < TM; i++) for (let q = 0; q < 2; q++) acc.push(`var c${i}_${q} = vec4<f32>();`);
  const body: string[] = [];
  for (let g = 0; g < TM / 8; g++) body.push(`let ag${g} = textureLoad(A, vec2<u32>(kq, m0 + ${8 * g}u + sg), la);`);
  for (let kk = 0; kk < 4; kk++) for (let q = 0; q < 2; q++) body.push(`let b${kk}_${q} = textureLoad(B, vec2<u32>(nq + ${q}u, k + ${kk}u), lb);`);
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
        const col = `nq * 4u + ${4 * q + c}u`;
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
@compute @workgroup_size(8, ${ROWS / TM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(subgroup_invocation_id) sg: u32) {
  let m0 = (wid.y * ${ROWS / TM}u + lid.y) * ${TM}u;
  let nq = (wid.x * 8u + lid.x) * 2u;
  let la = select(0u, wid.z, p.batchA > 1u);
  let lb = select(0u, wid.z, p.batchB > 1u);
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
export function matmulTextureFits(device: Device, o: Pick<MatmulOptions, 'M' | 'N' | 'K' | 'batch' | 'batchA' | 'batchB'>): boolean {
  const l = device.limits;
  const Mp = pad(o.M, ROWS);
  const Np = pad(o.N, COLS);
  const Kp = pad(o.K, 4);
  const dim = l.maxTextureDimension2D;
  const grid = l.maxComputeWorkgroupsPerDimension;
  return (
    Kp / 4 <= dim && Mp <= dim && Np / 4 <= dim && Kp <= dim &&
    Math.max(o.batchA, o.batchB) <= l.maxTextureArrayLayers &&
    Math.max(Mp, Kp, o.batch) <= grid // pack rows and batch, multiply batch
  );
}

/**
 * Records C = op(A)·op(B) (+ bias) through textures. Needs subgroups of exactly 8
 * lanes that are the rows (local_invocation_id.y) of the 8×4 workgroup, as on
 * lavapipe, where alone it is chosen.
 */
export function matmulTexture(device: Device, a: Tensor, b: Tensor, c: Tensor, o: MatmulOptions): void {
  const { M, N, K } = o;
  const Mp = pad(M, ROWS);
  const Np = pad(N, COLS);
  const Kp = pad(K, 4);
  // op(A)[m, k]: A stored [M, K] (rs K, cs 1) or, transposed, [K, M] (rs 1, cs M)
  const at = pack(device, a, M, K, o.transA ? 1 : K, o.transA ? M : 1, o.batchA, Mp, Kp, true);
  // op(B)[k, n] packed along n: B stored [K, N] (rs N, cs 1) or, transposed, [N, K] (rs 1, cs K)
  const bt = pack(device, b, K, N, o.transB ? 1 : N, o.transB ? K : 1, o.batchB, Kp, Np, false);
  const hasBias = o.bias !== undefined;
  const pipeline = device.pipeline(`matmul tex:multiply:${hasBias}`, `matmul texture 16×8 subgroup${hasBias ? ' +bias' : ''}`, () => multiplySource(hasBias));
  const u = device.uniforms(new UniformWriter().u32(M, N, Kp / 4, o.batchA, o.batchB, 0, 0, 0).bytes());
  const bindings = [at.view, bt.view, c.buffer, u];
  if (o.bias) bindings.push(o.bias.buffer);
  device.dispatch(pipeline, bindings, [Np / COLS, Mp / ROWS, o.batch]);
  device.releaseTexture(at);
  device.releaseTexture(bt);
}
