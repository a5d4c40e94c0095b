// The GPU GEMM core of the large-tile kernel family (issue 19): a workgroup of
// (BN/TN)×(BM/TM) threads computes a BM×BN tile of C, each thread TM×TN outputs as
// TM rows × TN/4 vec4 columns, K walked in slices of BK staged in workgroup memory
// (A transposed, As[k][m/4], B as Bs[k][n/4]), so the inner loop reads TM/4 + TN/4
// vec4s per k for TM·TN FMAs. Global memory is read four elements at a time into
// registers: A as a quad along k for one row m, B as a quad along n for one k; with
// `double` the next slice is loaded into registers during the math of this one and
// two stages alternate (one barrier per slice).
//
// The generator knows nothing of what the operands are: each user (matmulLarge.ts,
// conv2dLarge.ts) supplies WGSL functions ldA(m, k) -> vec4<E> (A[m][k..k+3]),
// ldB(k, n) -> vec4<E> (B[k][n..n+3]) and st(m, n, v) (C[m][n..n+3] = v), all
// bounds-checked, plus setup code that fixes the K range. Each thread's A quads
// always start at the same offset in a slice (aK) and its B quads at the same column
// (bN), so gathers (im2col) can decode their per-column positions once (setup) and
// their per-slice ones once per slice (slice), into private variables.
//
// Port of bench/gpu/matmul-sweep.ts's tiledVec4 (measured on an H200: 128×128, 8×8
// per thread, vec4 loads 54% of the FMA peak vs 35% for the 64×64 kernel).
import type { GemmTile } from '../gpu/policy.ts';

export type { GemmTile };

/** 128×128, 8×8 per thread, BK 8 (both stages fit the default 16 KiB of workgroup memory). */
export const TILE_128: GemmTile = { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, double: false };
export const TILE_128_DB: GemmTile = { ...TILE_128, double: true };
/** 128×64, 8×4 per thread; 64×128, 4×8 per thread (BK 16). */
export const TILE_128x64: GemmTile = { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4, double: false };
export const TILE_64x128: GemmTile = { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8, double: false };
/** The family, largest first (the planners' and the autotuner's candidates). */
export const LARGE_TILES: readonly GemmTile[] = [TILE_128, TILE_128_DB, TILE_128x64, TILE_64x128];

export type Elem = 'f32' | 'f16';

/** An operand of the large kernels: f32 tensors, or f16 buffers (elements in pairs: kernels/cast.ts). */
export type GemmOperand = { readonly buffer: GPUBuffer; readonly size: number };

export function tileName(t: GemmTile): string {
  return `${t.bm}×${t.bn} (${t.tm}×${t.tn} per thread, BK ${t.bk}${t.double ? ', double-buffered' : ''})`;
}

export function tileKey(t: GemmTile): string {
  return `${t.bm}x${t.bn}x${t.bk}:${t.tm}x${t.tn}${t.double ? ':db' : ''}`;
}

/** Threads per workgroup along n (x) and m (y). */
export function tileThreads(t: GemmTile): [number, number] {
  return [t.bn / t.tn, t.bm / t.tm];
}

/** Why a tile cannot be generated, or null. */
export function tileProblem(t: GemmTile): string | null {
  const [tx, ty] = tileThreads(t);
  const T = tx * ty;
  const la = (t.bm * t.bk) / 4 / T;
  const lb = (t.bk * t.bn) / 4 / T;
  if (t.tm % 4 || t.tn % 4 || t.bk % 4 || t.bm % t.tm || t.bn % t.tn) return 'TM, TN and BK must be multiples of 4 dividing the tile';
  if (!Number.isInteger(la) || !Number.isInteger(lb) || la < 1 || lb < 1) return `each of the ${T} threads must load whole quads of A and B per slice`;
  if (T % (t.bk / 4) || T % (t.bn / 4)) return 'threads must be a multiple of the quads per A row and per B row';
  if (T > 256) return `${T} threads per workgroup (WebGPU's default limit is 256)`;
  return null;
}

/** Bytes of workgroup memory the tile takes. */
export function tileSharedBytes(t: GemmTile, elem: Elem): number {
  return (t.double ? 2 : 1) * t.bk * (t.bm + t.bn) * (elem === 'f16' ? 2 : 4);
}

export interface GemmSpec {
  elem: Elem;
  /** module scope: enable lines excluded; bindings, Params, var<private>s, fn ldA, ldB, st */
  decls: string;
  /** in main, after m0, n0, z (= wid.z), aK (A's quad offset in a slice) and bN (B's quad column) are defined: must define kBegin and kEnd */
  setup: string;
  /** at the start of each slice's loads, with ks its first k (e.g. decode a tap) */
  slice?: string;
  /**
   * Which way the quads run, so they follow each operand's contiguous dimension:
   * A 'mk' (default): ldA(m, k) = A[m][k..k+3]; 'km': ldA(m, k) = A[m..m+3][k].
   * B 'kn' (default): ldB(k, n) = B[k][n..n+3]; 'nk': ldB(k, n) = B[k..k+3][n].
   */
  aQuads?: 'mk' | 'km';
  bQuads?: 'kn' | 'nk';
  /** a label comment */
  what: string;
}

/** The WGSL of one kernel of the family. Dispatch: [ceil(N / bn), ceil(M / bm), z]. */
export function gemmSource(t: GemmTile, s: GemmSpec): string {
  const problem = tileProblem(t);
  if (problem) throw new Error(`gemmLarge: tile ${tileName(t)}: ${problem}`);
  const { bm: BM, bn: BN, bk: BK, tm: TM, tn: TN } = t;
  const [TX, TY] = tileThreads(t);
  const T = TX * TY;
  const LA = (BM * BK) / 4 / T;
  const LB = (BK * BN) / 4 / T;
  const E = s.elem;
  const stA = (BK * BM) / 4; // vec4s per stage
  const stB = (BK * BN) / 4;
  const NS = t.double ? 2 : 1;
  const cvt = (x: string): string => (E === 'f32' ? x : `vec4<f32>(${x})`);
  const aKM = s.aQuads === 'km';
  const bNK = s.bQuads === 'nk';
  const L: string[] = [];
  L.push(`// ${s.what}: large-tile GEMM ${tileName(t)}, ${E} operands, f32 accumulation (kernels/gemmLarge.ts)`);
  if (E === 'f16') L.push('enable f16;');
  L.push(s.decls);
  L.push(`var<workgroup> As: array<vec4<${E}>, ${NS * stA}>; // [stage][k][m/4]
var<workgroup> Bs: array<vec4<${E}>, ${NS * stB}>; // [stage][k][n/4]
@compute @workgroup_size(${TX}, ${TY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * ${BM}u;
  let n0 = wid.x * ${BN}u;
  let z = wid.z;
  let tx = lid.x;
  let ty = lid.y;
  let aK = (li % ${BK / 4}u) * 4u;
  let bN = n0 + (li % ${BN / 4}u) * 4u;
  ${s.setup}`);
  for (let i = 0; i < TM; i++) for (let h = 0; h < TN / 4; h++) L.push(`  var acc_${i}_${h} = vec4<f32>();`);
  for (let j = 0; j < LA; j++) L.push(`  var ra${j}: vec4<${E}>;`);
  for (let j = 0; j < LB; j++) L.push(`  var rb${j}: vec4<${E}>;`);
  // global → registers for the slice starting at k
  const loadRegs = (k: string): string => {
    const o = [`    { let ks = ${k};`];
    if (s.slice) o.push(`      ${s.slice}`);
    for (let j = 0; j < LA; j++) {
      o.push(
        aKM
          ? `      ra${j} = ldA(m0 + ((li + ${j * T}u) % ${BM / 4}u) * 4u, ks + (li + ${j * T}u) / ${BM / 4}u);`
          : `      ra${j} = ldA(m0 + li / ${BK / 4}u + ${(j * T) / (BK / 4)}u, ks + aK);`,
      );
    }
    for (let j = 0; j < LB; j++) {
      o.push(
        bNK
          ? `      rb${j} = ldB(ks + ((li + ${j * T}u) % ${BK / 4}u) * 4u, n0 + (li + ${j * T}u) / ${BK / 4}u);`
          : `      rb${j} = ldB(ks + li / ${BN / 4}u + ${(j * T) / (BN / 4)}u, bN);`,
      );
    }
    o.push('    }');
    return o.join('\n');
  };
  // registers → workgroup stage `st` (A transposed: its k quad becomes four rows)
  const storeRegs = (st: string): string => {
    const o: string[] = [];
    for (let j = 0; j < LA; j++) {
      if (aKM) o.push(`    As[${st} * ${stA}u + li + ${j * T}u] = ra${j};`); // already a quad along m
      else {
        o.push(`    { let r = li / ${BK / 4}u + ${(j * T) / (BK / 4)}u;
      let base = ${st} * ${stA}u + (li % ${BK / 4}u) * ${BM}u + r / 4u; let c = r % 4u;
      As[base][c] = ra${j}.x; As[base + ${BM / 4}u][c] = ra${j}.y;
      As[base + ${BM / 2}u][c] = ra${j}.z; As[base + ${(3 * BM) / 4}u][c] = ra${j}.w; }`);
      }
    }
    for (let j = 0; j < LB; j++) {
      if (!bNK) o.push(`    Bs[${st} * ${stB}u + li + ${j * T}u] = rb${j};`);
      else {
        // a quad along k becomes four rows of Bs
        o.push(`    { let idx = li + ${j * T}u; let nr = idx / ${BK / 4}u;
      let base = ${st} * ${stB}u + (idx % ${BK / 4}u) * ${BN}u + nr / 4u; let c = nr % 4u;
      Bs[base][c] = rb${j}.x; Bs[base + ${BN / 4}u][c] = rb${j}.y;
      Bs[base + ${BN / 2}u][c] = rb${j}.z; Bs[base + ${(3 * BN) / 4}u][c] = rb${j}.w; }`);
      }
    }
    return o.join('\n');
  };
  const XYZW = ['x', 'y', 'z', 'w'];
  const math = (st: string): string => {
    const o = [`    for (var kk = 0u; kk < ${BK}u; kk++) {`];
    for (let g = 0; g < TM / 4; g++) o.push(`      let a${g} = ${cvt(`As[${st} * ${stA}u + kk * ${BM / 4}u + ${g * TY}u + ty]`)};`);
    for (let h = 0; h < TN / 4; h++) o.push(`      let b${h} = ${cvt(`Bs[${st} * ${stB}u + kk * ${BN / 4}u + ${h * TX}u + tx]`)};`);
    for (let i = 0; i < TM; i++) {
      for (let h = 0; h < TN / 4; h++) o.push(`      acc_${i}_${h} = fma(vec4<f32>(a${i >> 2}.${XYZW[i & 3]}), b${h}, acc_${i}_${h});`);
    }
    o.push('    }');
    return o.join('\n');
  };
  if (t.double) {
    L.push(`  let nt = select(0u, (kEnd - kBegin + ${BK - 1}u) / ${BK}u, kEnd > kBegin);
  if (nt > 0u) {
${loadRegs('kBegin')}
${storeRegs('0u')}
  }
  workgroupBarrier();
  for (var t = 0u; t < nt; t++) {
    let cur = t % 2u;
    let more = t + 1u < nt;
    if (more) {
${loadRegs(`kBegin + (t + 1u) * ${BK}u`)}
    }
${math('cur')}
    if (more) {
${storeRegs('(1u - cur)')}
    }
    workgroupBarrier();
  }`);
  } else {
    L.push(`  for (var k0 = kBegin; k0 < kEnd; k0 += ${BK}u) {
${loadRegs('k0')}
${storeRegs('0u')}
    workgroupBarrier();
${math('0u')}
    workgroupBarrier();
  }`);
  }
  // thread rows: the vec4 groups g·TY + ty of the tile; columns: the vec4 groups h·TX + tx
  for (let i = 0; i < TM; i++) {
    for (let h = 0; h < TN / 4; h++) {
      L.push(`  st(m0 + ${4 * (i >> 2) * TY}u + ty * 4u + ${i & 3}u, n0 + (${h * TX}u + tx) * 4u, acc_${i}_${h});`);
    }
  }
  L.push('}');
  return L.join('\n');
}

/**
 * The body of a quad loader: four elements at indices idx(c), each masked by ok(c)
 * (clamped into the array so a masked lane never reads past it); or one vec4 load
 * at `vec` (an index into the array viewed as vec4s) where the layout allows.
 */
export function quadBody(buf: string, elem: Elem, idx: (c: number) => string, ok: (c: number) => string, vec?: { idx: string; ok: string }): string {
  if (vec) return `if (${vec.ok}) { return ${buf}[${vec.idx}]; } return vec4<${elem}>();`;
  const comps = [0, 1, 2, 3].map((c) => `select(${elem}(0), ${buf}[min(${idx(c)}, arrayLength(&${buf}) - 1u)], ${ok(c)})`);
  return `return vec4<${elem}>(${comps.join(', ')});`;
}
