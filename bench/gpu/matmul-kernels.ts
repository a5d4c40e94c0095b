// WGSL generators for bench/gpu/matmul-sweep.ts. Every kernel computes
// C[M×N] = A[M×K]·B[K×N], all row-major, C in f32 (f16 only for a subgroup-matrix
// config whose result type is f16). Bindings: 0 A, 1 B, 2 C, 3 uniform {M, N, K, _}.
// Dispatch: (ceil(N / tile N), ceil(M / tile M), 1).

export interface KernelSource {
  code: string;
  /** workgroups along x (n) and y (m) for a given shape */
  grid(M: number, N: number): [number, number];
  /** why the shape cannot run on this kernel, or null */
  unsupported(M: number, N: number, K: number): string | null;
}

const ceil = (a: number, b: number) => Math.ceil(a / b);

// ------------------------------------------------------------------ tiled64 (scalar)
// The engine's current kernel (kernels/matmul.ts, tiled, no transposes/bias): a
// 16×16-thread workgroup computes a 64×64 tile of C, each thread a 4×4 block of
// contiguous rows/columns; K walked in slices of BK=16 staged in workgroup memory
// (As[k][m], Bs[k][n]), scalar f32 loads and stores. Any M, N, K (bounds-guarded).
export function tiled64Scalar(): KernelSource {
  const BM = 64, BN = 64, BK = 16, TM = 4, TN = 4, T = 256;
  const code = /* wgsl */ `
struct Params { M: u32, N: u32, K: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> As: array<f32, ${BK * BM}>;
var<workgroup> Bs: array<f32, ${BK * BN}>;
@compute @workgroup_size(${BN / TN}, ${BM / TM})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  var acc: array<array<f32, ${TN}>, ${TM}>;
  for (var k0 = 0u; k0 < p.K; k0 += ${BK}u) {
    for (var j = 0u; j < ${(BK * BM) / T}u; j++) {
      let idx = li + j * ${T}u;
      let r = idx / ${BK}u; let c = idx % ${BK}u;
      let m = m0 + r; let k = k0 + c;
      var v = 0.0;
      if (m < p.M && k < p.K) { v = A[m * p.K + k]; }
      As[c * ${BM}u + r] = v;
    }
    for (var j = 0u; j < ${(BK * BN) / T}u; j++) {
      let idx = li + j * ${T}u;
      let r = idx % ${BN}u; let c = idx / ${BN}u;
      let n = n0 + r; let k = k0 + c;
      var v = 0.0;
      if (n < p.N && k < p.K) { v = B[k * p.N + n]; }
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
  for (var i = 0u; i < ${TM}u; i++) {
    let m = m0 + lid.y * ${TM}u + i;
    if (m >= p.M) { continue; }
    for (var jj = 0u; jj < ${TN}u; jj++) {
      let n = n0 + lid.x * ${TN}u + jj;
      if (n < p.N) { C[m * p.N + n] = acc[i][jj]; }
    }
  }
}
`;
  return { code, grid: (M, N) => [ceil(N, BN), ceil(M, BM)], unsupported: () => null };
}

// ------------------------------------------------------------------ tiled, vec4 (generic)
export interface TiledSpec {
  BM: number;
  BN: number;
  BK: number;
  /** rows / columns of C per thread (multiples of 4) */
  TM: number;
  TN: number;
  /** two workgroup-memory stages: the next K slice is loaded into registers during the math */
  doubleBuffer: boolean;
  /** storage type of A and B; the math converts to f32 unless halfAcc */
  elem: 'f32' | 'f16';
  /** f16 only: FMA in vec4<f16> within one BK slice, added into f32 accumulators after it */
  halfAcc: boolean;
}

// A (BN/TN)×(BM/TM)-thread workgroup computes a BM×BN tile of C; each thread TM×TN
// outputs as TM rows × TN/4 vec4 columns. A and B are read from storage as vec4
// (along k for A, along n for B; needs K % 4 == 0 and N % 4 == 0), A is stored
// transposed in workgroup memory (As[k][m], as vec4 over m) and B as Bs[k][n], so the
// inner loop reads TM/4 + TN/4 vec4s per k. A thread's rows are the vec4 groups
// g·(BM/TM) + ty (g < TM/4) and its columns the vec4 groups h·(BN/TN) + tx, so
// neighbouring threads read neighbouring vec4s. M, N, K tails: zero-filled tiles,
// masked stores. With doubleBuffer: two stages, one barrier per K slice.
export function tiledVec4(s: TiledSpec): KernelSource {
  const { BM, BN, BK, TM, TN, doubleBuffer, elem, halfAcc } = s;
  const TX = BN / TN, TY = BM / TM, T = TX * TY;
  const LA = (BM * BK) / 4 / T, LB = (BK * BN) / 4 / T;
  if (TM % 4 || TN % 4 || BK % 4 || !Number.isInteger(LA) || !Number.isInteger(LB) || LA < 1 || LB < 1)
    throw new Error(`tiledVec4: bad tile ${JSON.stringify(s)}`);
  const E = elem;
  const stA = (BK * BM) / 4, stB = (BK * BN) / 4; // vec4s per stage
  const NS = doubleBuffer ? 2 : 1;
  const L: string[] = [];
  const cvt = (x: string) => (E === 'f32' || halfAcc ? x : `vec4<f32>(${x})`);
  L.push(E === 'f16' ? 'enable f16;' : '');
  L.push(`struct Params { M: u32, N: u32, K: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> A: array<vec4<${E}>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<${E}>>;
@group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> As: array<vec4<${E}>, ${NS * stA}>; // [stage][k][m/4]
var<workgroup> Bs: array<vec4<${E}>, ${NS * stB}>; // [stage][k][n/4]
@compute @workgroup_size(${TX}, ${TY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let K4 = p.K / 4u;
  let N4 = p.N / 4u;
  let tx = lid.x;
  let ty = lid.y;
  let zero = vec4<${E}>();`);
  for (let i = 0; i < TM; i++) for (let h = 0; h < TN / 4; h++) L.push(`  var acc_${i}_${h} = vec4<f32>();`);
  for (let j = 0; j < LA; j++) L.push(`  var ra${j}: vec4<${E}>;`);
  for (let j = 0; j < LB; j++) L.push(`  var rb${j}: vec4<${E}>;`);
  // global → registers for the K slice starting at k0
  const loadRegs = (k0: string) => {
    const o: string[] = [];
    for (let j = 0; j < LA; j++) {
      o.push(`    { let idx = li + ${j * T}u; let r = idx / ${BK / 4}u; let kv = idx % ${BK / 4}u;
      let m = m0 + r; let k = ${k0} + kv * 4u;
      ra${j} = zero; if (m < p.M && k < p.K) { ra${j} = A[m * K4 + k / 4u]; } }`);
    }
    for (let j = 0; j < LB; j++) {
      o.push(`    { let idx = li + ${j * T}u; let kr = idx / ${BN / 4}u; let nv = idx % ${BN / 4}u;
      let k = ${k0} + kr; let n = n0 + nv * 4u;
      rb${j} = zero; if (k < p.K && n < p.N) { rb${j} = B[k * N4 + n / 4u]; } }`);
    }
    return o.join('\n');
  };
  // registers → workgroup stage `st` (A transposed)
  const storeRegs = (st: string) => {
    const o: string[] = [];
    for (let j = 0; j < LA; j++) {
      o.push(`    { let idx = li + ${j * T}u; let r = idx / ${BK / 4}u; let kv = idx % ${BK / 4}u;
      let base = ${st} * ${stA}u + kv * ${BM}u + r / 4u; let c = r % 4u;
      As[base][c] = ra${j}.x; As[base + ${BM / 4}u][c] = ra${j}.y;
      As[base + ${BM / 2}u][c] = ra${j}.z; As[base + ${(3 * BM) / 4}u][c] = ra${j}.w; }`);
    }
    for (let j = 0; j < LB; j++) {
      o.push(`    { let idx = li + ${j * T}u; Bs[${st} * ${stB}u + idx] = rb${j}; }`);
    }
    return o.join('\n');
  };
  const math = (st: string) => {
    const o: string[] = [];
    if (halfAcc) for (let i = 0; i < TM; i++) for (let h = 0; h < TN / 4; h++) o.push(`    var hacc_${i}_${h} = vec4<f16>();`);
    o.push(`    for (var kk = 0u; kk < ${BK}u; kk++) {`);
    for (let g = 0; g < TM / 4; g++) o.push(`      let a${g} = ${cvt(`As[${st} * ${stA}u + kk * ${BM / 4}u + ${g * TY}u + ty]`)};`);
    for (let h = 0; h < TN / 4; h++) o.push(`      let b${h} = ${cvt(`Bs[${st} * ${stB}u + kk * ${BN / 4}u + ${h * TX}u + tx]`)};`);
    const comp = ['x', 'y', 'z', 'w'];
    for (let i = 0; i < TM; i++) {
      const g = Math.floor(i / 4), c = comp[i % 4];
      for (let h = 0; h < TN / 4; h++) {
        if (halfAcc) o.push(`      hacc_${i}_${h} = fma(vec4<f16>(a${g}.${c}), b${h}, hacc_${i}_${h});`);
        else o.push(`      acc_${i}_${h} = fma(vec4<f32>(a${g}.${c}), b${h}, acc_${i}_${h});`);
      }
    }
    o.push('    }');
    if (halfAcc) for (let i = 0; i < TM; i++) for (let h = 0; h < TN / 4; h++) o.push(`    acc_${i}_${h} += vec4<f32>(hacc_${i}_${h});`);
    return o.join('\n');
  };
  if (doubleBuffer) {
    L.push(`  let nt = (p.K + ${BK - 1}u) / ${BK}u;
${loadRegs('0u')}
${storeRegs('0u')}
  workgroupBarrier();
  for (var t = 0u; t < nt; t++) {
    let cur = t % 2u;
    let more = t + 1u < nt;
    if (more) {
${loadRegs(`(t + 1u) * ${BK}u`)}
    }
${math('cur')}
    if (more) {
${storeRegs('(1u - cur)')}
    }
    workgroupBarrier();
  }`);
  } else {
    L.push(`  for (var k0 = 0u; k0 < p.K; k0 += ${BK}u) {
${loadRegs('k0')}
${storeRegs('0u')}
    workgroupBarrier();
${math('0u')}
    workgroupBarrier();
  }`);
  }
  for (let i = 0; i < TM; i++) {
    const g = Math.floor(i / 4), c = i % 4;
    L.push(`  { let m = m0 + (${g * TY}u + ty) * 4u + ${c}u;
    if (m < p.M) {`);
    for (let h = 0; h < TN / 4; h++)
      L.push(`      { let n4 = n0 / 4u + ${h * TX}u + tx; if (n4 < N4) { C[m * N4 + n4] = acc_${i}_${h}; } }`);
    L.push('    } }');
  }
  L.push('}');
  return {
    code: L.join('\n'),
    grid: (M, N) => [ceil(N, BN), ceil(M, BM)],
    unsupported: (_M, N, K) => (N % 4 || K % 4 ? 'needs N % 4 == 0 and K % 4 == 0 (vec4 loads)' : null),
  };
}

// ------------------------------------------------------------------ subgroup matrices
export interface SubgroupMatrixSpec {
  /** the adapter's config: left M×K, right K×N, result M×N */
  M: number;
  N: number;
  K: number;
  result: 'f32' | 'f16';
  /** result matrices per subgroup along m and n */
  FM: number;
  FN: number;
  /** workgroup size = one subgroup (must be a multiple of subgroupMaxSize) */
  subgroupSize: number;
  /** 'template': subgroupMatrixLoad<T, row_major>(p, off, stride), subgroupMatrixStore<row_major>(p, off, v, stride)
   *  (Dawn since mid-2025); 'bool': subgroupMatrixLoad<T>(p, off, false, stride), subgroupMatrixStore(p, off, v, false, stride) */
  syntax: 'template' | 'bool';
}

// One subgroup per workgroup (so every operand offset derives from workgroup_id and
// is subgroup-uniform without subgroup_id): it computes FM×FN result matrices,
// an (FM·M)×(FN·N) tile of C, loading its left (A, row-major, stride K) and right
// (B, row-major, stride N) fragments straight from storage each K step (no
// workgroup staging; relies on L1/L2), f16 operands, f32 (or f16) accumulation.
// Needs M % (FM·cfg.M) == 0, N % (FN·cfg.N) == 0, K % cfg.K == 0.
export function subgroupMatrix(s: SubgroupMatrixSpec): KernelSource {
  const { FM, FN } = s;
  const R = s.result;
  const load = (ty: string, ptr: string, off: string, stride: string) =>
    s.syntax === 'template' ? `subgroupMatrixLoad<${ty}, row_major>(${ptr}, ${off}, ${stride})` : `subgroupMatrixLoad<${ty}>(${ptr}, ${off}, false, ${stride})`;
  const store = (ptr: string, off: string, v: string, stride: string) =>
    s.syntax === 'template' ? `subgroupMatrixStore<row_major>(${ptr}, ${off}, ${v}, ${stride});` : `subgroupMatrixStore(${ptr}, ${off}, ${v}, false, ${stride});`;
  const L: string[] = [];
  L.push(`enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
alias Left = subgroup_matrix_left<f16, ${s.K}, ${s.M}>;
alias Right = subgroup_matrix_right<f16, ${s.N}, ${s.K}>;
alias Res = subgroup_matrix_result<${R}, ${s.N}, ${s.M}>;
struct Params { M: u32, N: u32, K: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<${R}>;
@group(0) @binding(3) var<uniform> p: Params;
@compute @workgroup_size(${s.subgroupSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  let m0 = wid.y * ${FM * s.M}u;
  let n0 = wid.x * ${FN * s.N}u;`);
  for (let i = 0; i < FM; i++) for (let j = 0; j < FN; j++) L.push(`  var acc_${i}_${j} = Res();`);
  L.push(`  for (var k = 0u; k < p.K; k += ${s.K}u) {`);
  for (let i = 0; i < FM; i++) L.push(`    let a${i} = ${load('Left', '&A', `(m0 + ${i * s.M}u) * p.K + k`, 'p.K')};`);
  for (let j = 0; j < FN; j++) L.push(`    let b${j} = ${load('Right', '&B', `k * p.N + n0 + ${j * s.N}u`, 'p.N')};`);
  for (let i = 0; i < FM; i++)
    for (let j = 0; j < FN; j++) L.push(`    acc_${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc_${i}_${j});`);
  L.push('  }');
  for (let i = 0; i < FM; i++)
    for (let j = 0; j < FN; j++) L.push(`  ${store('&C', `(m0 + ${i * s.M}u) * p.N + n0 + ${j * s.N}u`, `acc_${i}_${j}`, 'p.N')}`);
  L.push('}');
  const tm = FM * s.M, tn = FN * s.N;
  return {
    code: L.join('\n'),
    grid: (M, N) => [ceil(N, tn), ceil(M, tm)],
    unsupported: (M, N, K) => (M % tm || N % tn || K % s.K ? `needs M % ${tm} == 0, N % ${tn} == 0, K % ${s.K} == 0` : null),
  };
}

// ------------------------------------------------------------------ FMA peak
// Each invocation runs CHAINS independent dependent chains of vec4 FMAs
// (x = fma(x, b, c), b and c from the uniform buffer so nothing folds), the loop body
// unrolled UNROLL times, `iters` iterations: FLOPs = invocations · iters · UNROLL ·
// CHAINS · 4 lanes · 2.
export const PEAK_CHAINS = 4;
export const PEAK_UNROLL = 16;
export function fmaPeak(elem: 'f32' | 'f16', wgSize: number): string {
  const E = elem;
  const L: string[] = [];
  if (E === 'f16') L.push('enable f16;');
  L.push(`struct Params { iters: u32, _a: u32, _b: u32, _c: u32, b: f32, c: f32, _d: f32, _e: f32 }
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;
@compute @workgroup_size(${wgSize})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = vec4<${E}>(${E}(p.b));
  let c = vec4<${E}>(${E}(p.c));
  let s = ${E}(f32(gid.x % 64u) * 0.001);`);
  for (let i = 0; i < PEAK_CHAINS; i++) L.push(`  var x${i} = vec4<${E}>(s, s + ${E}(0.1), s + ${E}(0.2), ${E}(${(0.3 + 0.05 * i).toFixed(2)}));`);
  L.push('  for (var i = 0u; i < p.iters; i++) {');
  for (let u = 0; u < PEAK_UNROLL; u++) for (let i = 0; i < PEAK_CHAINS; i++) L.push(`    x${i} = fma(x${i}, b, c);`);
  L.push('  }');
  L.push(`  let t = ${Array.from({ length: PEAK_CHAINS }, (_, i) => `x${i}`).join(' + ')};
  out[gid.x] = f32(t.x + t.y + t.z + t.w);
}`);
  return L.join('\n');
}

// ------------------------------------------------------------------ f16 conversion
// f32 → IEEE half bits (round to nearest even) and back: the engine's host conversion
export { fromHalfBits as fromHalf, toHalfBits as toHalf } from '../../kernels/cast.ts';
