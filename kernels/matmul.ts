// Batched matrix multiply C[b] = op(A[b]) · op(B[b]) (+ bias[n]), op = identity
// or transpose, row-major, batch dimension broadcast when an operand has batch 1.
//
// Three kernels, picked per adapter and shape (chooseConfig):
//
// tiled   A workgroup of 16×16 threads computes a 64×64 tile of C, each thread a
//         4×4 register block; K is walked in slices of 16 staged in workgroup
//         memory. Any M, N, K. The classic GPU kernel.
// texture kernels/matmulTexture.ts: operands repacked into storage textures, rows
//         of A shared by the 8 lanes of a subgroup. Software adapters with
//         subgroups of 8 (lavapipe), products ≥ 64 in every dimension.
// direct  No workgroup memory and no barriers: each thread computes a TM×TN block
//         of C (vec4 accumulators along n) reading its operands straight from
//         the storage buffers, four k at a time as vec4 where the layout allows
//         (the operand's contiguous dimension divisible by 4), scalar otherwise.
//         Rows and columns past M, N are clamped for loads and masked for
//         stores, so the inner loop has no bounds checks. For software adapters.
//
// Why two: on lavapipe (Mesa 25.0 llvmpipe) a workgroup's invocations are the
// lanes of 8-wide AVX2 vectors, and every memory access is split into one scalar
// access per lane (with its own mask test and, for storage buffers, descriptor
// lookup and bounds check): measured per 8-lane vec4 load, in CPU cycles,
// storage buffer ~100, workgroup memory ~200, uniform buffer ~55, read-only
// storage texture ~35, against ~1 for an 8-lane FMA. Staging tiles in workgroup
// memory therefore makes every load twice as expensive, and what matters is
// loads per FMA: (TM + TN)/(TM·TN) per k. fma() compiles to mul + add, and every
// loop-carried variable is re-blended with the loop mask once per iteration.
//
// History (1024³ on lavapipe, 2 cores, GFLOP per CPU-second, FMA peak ≈ 30):
//   tiled 64×64, 4×4, BK=16 (the original)                          ~0.3
//   direct, storage buffers, 4×8 per thread, wg 8×8                 ~1.8
//   direct, storage buffers, 8×8 per thread, wg 8×8                 ~2.3  (LLVM compile 13 s)
//   direct, 4×4 / 8×4 / 2×16                                         1.0-1.5
//   direct, A and B in rgba32f storage textures, 4×8               4-7
//   textures + subgroupBroadcast of A (8 lanes share 8 rows), 8×8  ~10-13 (kernels/matmulTexture.ts,
//     the default on lavapipe for products ≥ 64 in every dimension)
//   classifier shapes (128×10×64 and its gradients): tiled 0.6-1.4 ms, direct 4×4
//     per thread in 4×4 workgroups 0.17-0.29 ms (more workgroups keep both cores busy)
// Larger register blocks spill (16 ymm registers) and LLVM's compile time grows
// steeply with the block (8×8: 13 s, 16×16: 25 s), so the direct default is 4×8,
// and 4×4 in 4×4 workgroups for outputs up to 128×128. The autotuner (kernels/autotune.ts)
// times the candidates per shape class and keeps the winners per adapter on disk.
// On GPUs: the 64×64 tiled kernel, and the large tiles (kernels/matmulLarge.ts) for
// products that fill the GPU.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import type { AdapterProfile, Device } from '../gpu/device.ts';

/**
 * What the matmul planner reads: the adapter's profile, and its label (the tuning file
 * is per adapter); the f16 and subgroup-matrix features where the profile says them.
 */
export type MatmulProfile = AdapterProfile & Pick<Device, 'label'> & Partial<Pick<Device, 'hasShaderF16' | 'subgroupMatrixConfigs'>>;
import type { MatmulConfig } from '../gpu/policy.ts';

export type { MatmulConfig };
import type { Operand } from './operand.ts';
import type { MatmulOptions } from './matmulOptions.ts';
import { UniformWriter, hasSubgroupsOf8, isSoftwareAdapter } from './common.ts';
import { matmulTexture, matmulTextureFits } from './matmulTexture.ts';
import { largeMatmulTile, matmulLarge, tileName } from './matmulLarge.ts';
import { matmulSubgroupMatrix, subgroupMatrixProblem } from './matmulSubgroupMatrix.ts';
import { withF16 } from './cast.ts';

export type { MatmulOptions } from './matmulOptions.ts';



export const DIRECT_DEFAULT: MatmulConfig = { kind: 'direct', tm: 4, tn: 8, wx: 8, wy: 8 };
export const DIRECT_SMALL: MatmulConfig = { kind: 'direct', tm: 4, tn: 4, wx: 4, wy: 4 };

export const TEXTURE: MatmulConfig = { kind: 'texture' };
export const SUBGROUP_MATRIX: MatmulConfig = { kind: 'subgroupMatrix' };

/** Whether the subgroup-matrix kernel can compute this product on this adapter. */
function subgroupMatrixFits(device: MatmulProfile, o: MatmulOptions): boolean {
  if (o.transA || o.transB || o.batch !== 1 || o.bias) return false;
  const profile = { subgroupMatrixConfigs: device.subgroupMatrixConfigs ?? [], hasShaderF16: device.hasShaderF16 ?? false };
  return subgroupMatrixProblem(profile, o.M, o.N, o.K) === null;
}

export function configName(c: MatmulConfig): string {
  if (c.kind === 'texture') return 'texture 8×8 per lane, subgroup-shared A (kernels/matmulTexture.ts)';
  if (c.kind === 'large') return `large ${tileName(c.tile)} (kernels/matmulLarge.ts)`;
  if (c.kind === 'subgroupMatrix') return 'subgroup matrices, f16 operands (kernels/matmulSubgroupMatrix.ts)';
  return c.kind === 'tiled' ? 'tiled 64×64 (4×4, BK 16, workgroup memory)' : `direct ${c.tm}×${c.tn} per thread, wg ${c.wx}×${c.wy}`;
}

// ------------------------------------------------------------------ tiled

const BM = 64;
const BN = 64;
const BK = 16;
const TM = 4;
const TN = 4;
const THREADS = (BM / TM) * (BN / TN); // 256

const tiledSource = (transA: boolean, transB: boolean, hasBias: boolean): string => wgsl`
struct Params { M: u32, N: u32, K: u32, strideA: u32, strideB: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#if ${hasBias}
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif

var<workgroup> As: array<f32, ${BK * BM}>; // [k][m]
var<workgroup> Bs: array<f32, ${BK * BN}>; // [k][n]

@compute @workgroup_size(${BN / TN}, ${BM / TM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let aBase = wid.z * p.strideA;
  let bBase = wid.z * p.strideB;
  var acc: array<array<f32, ${TN}>, ${TM}>;
  for (var k0 = 0u; k0 < p.K; k0 += ${BK}u) {
    for (var j = 0u; j < ${(BK * BM) / THREADS}u; j++) {
      let idx = li + j * ${THREADS}u;
#if ${transA}
      // A is K×M: consecutive threads walk m
      let r = idx % ${BM}u; let c = idx / ${BM}u;
      let m = m0 + r; let k = k0 + c;
      var v = 0.0;
      if (m < p.M && k < p.K) { v = A[aBase + k * p.M + m]; }
#else
      // A is M×K: consecutive threads walk k
      let r = idx / ${BK}u; let c = idx % ${BK}u;
      let m = m0 + r; let k = k0 + c;
      var v = 0.0;
      if (m < p.M && k < p.K) { v = A[aBase + m * p.K + k]; }
#endif
      As[c * ${BM}u + r] = v;
    }
    for (var j = 0u; j < ${(BK * BN) / THREADS}u; j++) {
      let idx = li + j * ${THREADS}u;
#if ${transB}
      // B is N×K: consecutive threads walk k
      let r = idx / ${BK}u; let c = idx % ${BK}u;
      let n = n0 + r; let k = k0 + c;
      var v = 0.0;
      if (n < p.N && k < p.K) { v = B[bBase + n * p.K + k]; }
#else
      // B is K×N: consecutive threads walk n
      let r = idx % ${BN}u; let c = idx / ${BN}u;
      let n = n0 + r; let k = k0 + c;
      var v = 0.0;
      if (n < p.N && k < p.K) { v = B[bBase + k * p.N + n]; }
#endif
      Bs[c * ${BN}u + r] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
      var a: array<f32, ${TM}>;
      var b: array<f32, ${TN}>;
      for (var i = 0u; i < ${TM}u; i++) { a[i] = As[k * ${BM}u + lid.y * ${TM}u + i]; }
      for (var i = 0u; i < ${TN}u; i++) { b[i] = Bs[k * ${BN}u + lid.x * ${TN}u + i]; }
      for (var i = 0u; i < ${TM}u; i++) {
        for (var jj = 0u; jj < ${TN}u; jj++) { acc[i][jj] = fma(a[i], b[jj], acc[i][jj]); }
      }
    }
    workgroupBarrier();
  }
  let cBase = wid.z * p.M * p.N;
  for (var i = 0u; i < ${TM}u; i++) {
    let m = m0 + lid.y * ${TM}u + i;
    if (m >= p.M) { continue; }
    for (var jj = 0u; jj < ${TN}u; jj++) {
      let n = n0 + lid.x * ${TN}u + jj;
      if (n < p.N) {
#if ${hasBias}
        C[cBase + m * p.N + n] = acc[i][jj] + bias[n];
#else
        C[cBase + m * p.N + n] = acc[i][jj];
#endif
      }
    }
  }
}
`;

// ------------------------------------------------------------------ direct

/** What a direct kernel is specialised on (besides its tile). */
interface DirectSpec {
  tm: number;
  tn: number;
  wx: number;
  wy: number;
  transA: boolean;
  transB: boolean;
  hasBias: boolean;
  /** K % 4 == 0: k advances four at a time */
  k4: boolean;
  /** operands read as vec4 along their contiguous dimension */
  vecA: boolean;
  vecB: boolean;
  /** N % 4 == 0: C written as vec4 */
  vecC: boolean;
}

function directSpec(c: Extract<MatmulConfig, { kind: 'direct' }>, o: MatmulOptions): DirectSpec {
  const k4 = o.K % 4 === 0;
  return {
    ...c,
    transA: o.transA,
    transB: o.transB,
    hasBias: o.bias !== undefined,
    k4,
    // A is M×K (contiguous k) or K×M (contiguous m); B is K×N (contiguous n) or N×K (contiguous k)
    vecA: o.transA ? o.M % 4 === 0 : k4,
    vecB: o.transB ? k4 : o.N % 4 === 0,
    vecC: o.N % 4 === 0,
  };
}

const XYZW = ['x', 'y', 'z', 'w'];

function directSource(s: DirectSpec): string {
  const { tm, tn } = s;
  const nq = tn / 4;
  const ku = s.k4 ? 4 : 1;
  const L: string[] = []; // body lines
  const line = (x: string): number => L.push(x);

  // Clamped row and column indices: loads stay in bounds, stores are masked.
  for (let i = 0; i < tm; i++) line(`let r${i} = min(m0 + ${i}u, p.M - 1u);`);
  for (let j = 0; j < tn; j++) line(`let c${j} = min(n0 + ${j}u, p.N - 1u);`);
  if (s.vecA && s.transA) for (let g = 0; g < tm / 4; g++) line(`let rq${g} = min(m0 / 4u + ${g}u, p.M / 4u - 1u);`);
  if (s.vecB && !s.transB) for (let q = 0; q < nq; q++) line(`let cq${q} = min(n0 / 4u + ${q}u, p.N / 4u - 1u);`);
  for (let i = 0; i < tm; i++) for (let q = 0; q < nq; q++) line(`var acc${i}_${q} = vec4<f32>();`);

  const body: string[] = [];
  // a(i, kk) and b(kk, j) as WGSL expressions, after the loads they need
  const a: string[][] = [];
  const b: string[][] = [];
  for (let i = 0; i < tm; i++) a.push([]);
  for (let kk = 0; kk < ku; kk++) b.push([]);
  if (s.vecA && !s.transA) {
    for (let i = 0; i < tm; i++) body.push(`let av${i} = A[aBase + r${i} * K4 + kq];`);
    for (let i = 0; i < tm; i++) for (let kk = 0; kk < ku; kk++) a[i]![kk] = `av${i}.${XYZW[kk]}`;
  } else if (s.vecA && s.transA) {
    for (let kk = 0; kk < ku; kk++) for (let g = 0; g < tm / 4; g++) body.push(`let at${kk}_${g} = A[aBase + (k + ${kk}u) * M4 + rq${g}];`);
    for (let i = 0; i < tm; i++) for (let kk = 0; kk < ku; kk++) a[i]![kk] = `at${kk}_${i >> 2}.${XYZW[i & 3]}`;
  } else {
    for (let i = 0; i < tm; i++) {
      for (let kk = 0; kk < ku; kk++) {
        const idx = s.transA ? `(k + ${kk}u) * p.M + r${i}` : `r${i} * p.K + k + ${kk}u`;
        body.push(`let as${i}_${kk} = A[aBase + ${idx}];`);
        a[i]![kk] = `as${i}_${kk}`;
      }
    }
  }
  if (s.vecB && !s.transB) {
    for (let kk = 0; kk < ku; kk++) for (let q = 0; q < nq; q++) body.push(`let bv${kk}_${q} = B[bBase + (k + ${kk}u) * N4 + cq${q}];`);
  } else if (s.vecB && s.transB) {
    for (let j = 0; j < tn; j++) body.push(`let bt${j} = B[bBase + c${j} * K4 + kq];`);
    for (let kk = 0; kk < ku; kk++) for (let j = 0; j < tn; j++) b[kk]![j] = `bt${j}.${XYZW[kk]}`;
  } else {
    for (let kk = 0; kk < ku; kk++) {
      for (let j = 0; j < tn; j++) {
        const idx = s.transB ? `c${j} * p.K + k + ${kk}u` : `(k + ${kk}u) * p.N + c${j}`;
        body.push(`let bs${kk}_${j} = B[bBase + ${idx}];`);
        b[kk]![j] = `bs${kk}_${j}`;
      }
    }
  }
  const bVec = (kk: number, q: number): string =>
    s.vecB && !s.transB ? `bv${kk}_${q}` : `vec4<f32>(${[0, 1, 2, 3].map((c) => b[kk]![4 * q + c]).join(', ')})`;
  for (let kk = 0; kk < ku; kk++) {
    for (let q = 0; q < nq; q++) {
      if (!(s.vecB && !s.transB)) body.push(`let bq${kk}_${q} = ${bVec(kk, q)};`);
    }
    for (let i = 0; i < tm; i++) {
      for (let q = 0; q < nq; q++) {
        const bv = s.vecB && !s.transB ? `bv${kk}_${q}` : `bq${kk}_${q}`;
        body.push(`acc${i}_${q} = fma(vec4<f32>(${a[i]![kk]}), ${bv}, acc${i}_${q});`);
      }
    }
  }

  const stores: string[] = [];
  if (s.hasBias) for (let q = 0; q < nq; q++) stores.push(`let bias${q} = vec4<f32>(${[0, 1, 2, 3].map((c) => `bias[c${4 * q + c}]`).join(', ')});`);
  for (let i = 0; i < tm; i++) {
    stores.push(`if (m0 + ${i}u < p.M) {`);
    for (let q = 0; q < nq; q++) {
      const v = s.hasBias ? `acc${i}_${q} + bias${q}` : `acc${i}_${q}`;
      if (s.vecC) {
        stores.push(`  if (n0 + ${4 * q}u < p.N) { C[(cBase + (m0 + ${i}u) * p.N + n0) / 4u + ${q}u] = ${v}; }`);
      } else {
        stores.push(`  { let v = ${v};`);
        for (let c = 0; c < 4; c++) {
          stores.push(`    if (n0 + ${4 * q + c}u < p.N) { C[cBase + (m0 + ${i}u) * p.N + n0 + ${4 * q + c}u] = v.${XYZW[c]}; }`);
        }
        stores.push('  }');
      }
    }
    stores.push('}');
  }

  const arr = (vec: boolean): string => (vec ? 'array<vec4<f32>>' : 'array<f32>');
  return /* wgsl */ `
// direct matmul ${tm}×${tn} per thread${s.transA ? ', Aᵀ' : ''}${s.transB ? ', Bᵀ' : ''}${s.hasBias ? ', +bias' : ''}
struct Params { M: u32, N: u32, K: u32, strideA: u32, strideB: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<storage, read> A: ${arr(s.vecA)};
@group(0) @binding(1) var<storage, read> B: ${arr(s.vecB)};
@group(0) @binding(2) var<storage, read_write> C: ${arr(s.vecC)};
@group(0) @binding(3) var<uniform> p: Params;
${s.hasBias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}

@compute @workgroup_size(${s.wx}, ${s.wy})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n0 = (wid.x * ${s.wx}u + lid.x) * ${tn}u;
  let m0 = (wid.y * ${s.wy}u + lid.y) * ${tm}u;
  let K4 = p.K / 4u;
  let M4 = p.M / 4u;
  let N4 = p.N / 4u;
  let aBase = wid.z * ${s.vecA ? 'p.strideA / 4u' : 'p.strideA'};
  let bBase = wid.z * ${s.vecB ? 'p.strideB / 4u' : 'p.strideB'};
  let cBase = wid.z * p.M * p.N;
  ${L.join('\n  ')}
  for (var k = 0u; k < p.K; k += ${ku}u) {
    let kq = k / 4u;
    ${body.join('\n    ')}
  }
  ${stores.join('\n  ')}
}`;
}

// ------------------------------------------------------------------ choice

/** The shape class a tuning result applies to: transposes and each dimension rounded up to a power of two. */
export function shapeClass(o: Pick<MatmulOptions, 'transA' | 'transB' | 'M' | 'N' | 'K'>): string {
  const p2 = (x: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, x)));
  return `${o.transA ? 'T' : 'N'}${o.transB ? 'T' : 'N'}:${p2(o.M)}x${p2(o.N)}x${p2(o.K)}`;
}

/** The kernel for this matmul: forced, tuned for its shape class on this adapter, or the adapter's default. */
export function chooseConfig(device: MatmulProfile, o: MatmulOptions): MatmulConfig {
  device.policy.trace?.matmul.push({ transA: o.transA, transB: o.transB, M: o.M, N: o.N, K: o.K });
  const force = device.policy.matmul.force;
  const textureOk = hasSubgroupsOf8(device) && matmulTextureFits(device, o);
  if (force) return force.kind === 'texture' && !textureOk ? DIRECT_DEFAULT : force;
  const tuned = device.policy.matmul.tuning?.get(shapeClass(o));
  if (tuned && (tuned.kind !== 'texture' || textureOk)) return tuned;
  if (!isSoftwareAdapter(device)) {
    // at f16 precision, the tensor cores where the adapter offers f16×f16→f32 subgroup
    // matrices and the product fits their kernel (row-major, unbatched, whole tiles, no bias)
    if (device.policy.precision === 'f16' && subgroupMatrixFits(device, o)) return SUBGROUP_MATRIX;
    // products that fill the GPU: the large tiles (128×128, 8×8 per thread), else the 64×64 kernel
    const tile = largeMatmulTile(device, o);
    return tile ? { kind: 'large', tile } : { kind: 'tiled' };
  }
  // Large products on lavapipe: textures + subgroups, 2-3× the direct kernel (kernels/matmulTexture.ts).
  if (textureOk && o.M >= 64 && o.N >= 64 && o.K >= 64) return TEXTURE;
  // Small outputs (a classifier's 128×10) get small blocks and workgroups, so both
  // cores have work: 3-6× faster than the tiled kernel there (measured on lavapipe).
  return o.M * o.N <= 128 * 128 ? DIRECT_SMALL : DIRECT_DEFAULT;
}

// ------------------------------------------------------------------ tuning

/** What the autotuner (kernels/autotune.ts) times on a software adapter. */
export const TUNE_CANDIDATES: MatmulConfig[] = [
  { kind: 'tiled' },
  { kind: 'direct', tm: 4, tn: 4, wx: 4, wy: 4 },
  { kind: 'direct', tm: 4, tn: 4, wx: 8, wy: 8 },
  { kind: 'direct', tm: 4, tn: 8, wx: 8, wy: 8 },
  { kind: 'direct', tm: 8, tn: 8, wx: 8, wy: 8 },
  { kind: 'texture' },
];

// ------------------------------------------------------------------ dispatch

/** Records C = op(A)·op(B) (+ bias). Shapes are the caller's to check. */
export function matmulKernel(device: Device, a: Operand, b: Operand, c: Operand, o: MatmulOptions): void {
  const cfg = chooseConfig(device, o);
  if (cfg.kind === 'texture') return matmulTexture(device, a, b, c, o);
  if (cfg.kind === 'large') return matmulLarge(device, a, b, c, o, cfg.tile);
  if (cfg.kind === 'subgroupMatrix') return withF16(device, [a, b], ([ha, hb]) => matmulSubgroupMatrix(device, ha!, hb!, c, o.M, o.N, o.K));
  const hasBias = o.bias !== undefined;
  const strideA = o.batchA === 1 ? 0 : o.M * o.K;
  const strideB = o.batchB === 1 ? 0 : o.K * o.N;
  const u = device.uniforms(new UniformWriter().u32(o.M, o.N, o.K, strideA, strideB, 0, 0, 0).bytes());
  const bindings: (GPUBuffer | GPUBufferBinding)[] = [a.buffer, b.buffer, c.buffer, u];
  if (o.bias) bindings.push(o.bias.buffer);
  const label = `matmul${o.transA ? ' Aᵀ' : ''}${o.transB ? ' Bᵀ' : ''}${hasBias ? ' +bias' : ''}`;
  if (cfg.kind === 'tiled') {
    const pipeline = device.pipeline(`matmul:${o.transA}:${o.transB}:${hasBias}`, label, () => tiledSource(o.transA, o.transB, hasBias));
    device.dispatch(pipeline, bindings, [Math.ceil(o.N / BN), Math.ceil(o.M / BM), o.batch]);
    return;
  }
  const s = directSpec(cfg, o);
  const key = `matmul-direct:${JSON.stringify(s)}`;
  const pipeline = device.pipeline(key, `${label} (direct ${s.tm}×${s.tn})`, () => directSource(s));
  device.dispatch(pipeline, bindings, [Math.ceil(o.N / (s.tn * s.wx)), Math.ceil(o.M / (s.tm * s.wy)), o.batch]);
}
