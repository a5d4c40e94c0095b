// Variants of the matmul kernels on one adapter, outside the engine (raw WebGPU):
// C = A·B (M = N = K = --size, default 512), A and B row-major. The engine runs
// 'buffer 4×8' (kernels/matmul.ts, direct) and, on lavapipe, the texture kernel of
// kernels/matmulTexture.ts ('subgroup 32×8 chained panelB wg 8×4' here; --engine
// adds the in-tree source itself); the others are what was measured against them.
//
//   buffer    kernels/matmul.ts's direct kernel as generated for this shape: each
//             thread TM×TN, vec4 loads from storage buffers (what the engine uses).
//   texture   the same loop with A and B in rgba32float read-only storage textures
//             (texel (k/4, m) = A[m, k..k+3]; texel (n/4, k) = B[k, n..n+3]). On
//             lavapipe a storage-texture load costs ~1/3 of a storage-buffer load
//             (bench/experiments/lavapipe-loads.ts).
//   subgroup  texture + the subgroups feature: the 8 lanes of a subgroup share TM
//             rows of A; lane l loads rows l, l+8, … (one texel each per 4 k) and
//             subgroupBroadcast hands every row's value to every lane, so A costs
//             TM/8 loads per 4 k instead of TM.
//   options   chained (one write per accumulator per 4 k), panelB (B panel-major:
//             a workgroup's 64 columns contiguous through k), ablations (hoistA,
//             hoistB, fixedB, noBroadcast: remove one cost, wrong results), …
//
//   node --import tsx bench/experiments/matmul-texture.ts [--size 512] [--rounds 3]
//        [--only NAME|NAME…] [--engine] [--pad-texels P]
//
// Figures are GFLOP per CPU-second (robust to other load on a software adapter;
// ×2 on 2 idle cores) and as a fraction of the FMA loop's figure, measured the same
// way: the best round, and the median round against the FMA loop's median.
// Only the "max |err|" of variants that write all of C means anything (C is shared).
//
// Reading the generated code: MESA_SHADER_CACHE_DISABLE=true GALLIVM_DEBUG=asm
// prints llvmpipe's x86 for every shader (the image loads are calls to a separate
// function; fma() is a vmulps and a vaddps; loop-carried writes are vblendvps).
import { multiplySource as engineMultiplySource } from '../../kernels/matmulTexture.ts';
import { makeRawDevice, rawTime } from './raw.ts';

const args = process.argv.slice(2);
const arg = (name: string, d: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const SIZE = arg('--size', 512);
const M = SIZE;
const N = SIZE;
const K = SIZE;
const XYZW = ['x', 'y', 'z', 'w'];

interface Variant {
  name: string;
  kind: 'buffer' | 'texture' | 'subgroup';
  tm: number;
  tn: number;
  wx: number;
  wy: number;
  /** subgroupShuffle from the row's lane instead of subgroupBroadcast */
  shuffle?: boolean;
  /** each row's broadcasts written just before that row's multiply-adds (else all first) */
  interleave?: boolean;
  /** register blocking: the multiply-adds of `block` rows × one column vec4 written
   * k-major (each B vector used by `block` rows before the next k), the rows'
   * broadcasts just before the block (else each accumulator's chain in turn) */
  block?: number;
  /** as the engine kernel had it: array textures (layer 0) and a bounds check on each scalar store */
  engineLike?: 'array' | 'guarded' | 'both';
  /** B panel-major: the 64 columns of a workgroup for k = 0…K-1 contiguous (texture 16 texels wide,
   * row panel·K + k), so a workgroup streams its B panel linearly instead of 256 bytes of each 4 KB row */
  panelB?: boolean;
  /** k-texels (4 k each) per loop iteration, each accumulator written once per iteration
   * as one chained expression (llvmpipe blends every loop-carried write with the loop
   * mask); 0: one statement per k (the old form) */
  chain?: number;
  /** a workgroupBarrier every this many k-texels, so llvmpipe runs the subgroups of a
   * workgroup in step (sharing B's texels in cache) instead of one after another */
  barrier?: number;
  /** ablation (wrong results, for timing only): 'hoistB' loads B's texels once before
   * the loop, 'hoistA' A's, 'noBroadcast' uses the lane's own A value instead of a
   * subgroupBroadcast; what each removes from the loop is what it costs */
  ablate?: 'hoistA' | 'hoistB' | 'noBroadcast' | 'fixedB';
}

function source(v: Variant): string {
  const nq = v.tn / 4;
  const acc: string[] = [];
  for (let i = 0; i < v.tm; i++) for (let q = 0; q < nq; q++) acc.push(`var c${i}_${q} = vec4<f32>();`);
  const body: string[] = [];
  const arrayTex = v.engineLike === 'array' || v.engineLike === 'both';
  const guarded = v.engineLike === 'guarded' || v.engineLike === 'both';
  const ldA = (row: string): string =>
    v.kind === 'buffer' ? `A[(${row}) * (p.K / 4u) + kq]` : `textureLoad(A, vec2<u32>(kq, ${row})${arrayTex ? ', 0u' : ''})`;
  const ldB = (col: string, k: string): string =>
    v.kind === 'buffer' ? `B[(${k}) * (p.N / 4u) + ${col}]` : v.panelB ? `textureLoad(B, vec2<u32>(${col.replace('nq', 'nl')}, pb + ${k}))` : `textureLoad(B, vec2<u32>(${col}, ${k})${arrayTex ? ', 0u' : ''})`;
  const kt = v.chain ?? 0;
  const hoisted: string[] = [];
  const rowBroadcasts: string[][] = Array.from({ length: v.tm }, () => []);
  if (kt > 0) {
    // chained: per k-texel t, load A (subgroup) and B, then one expression per accumulator
    for (let t = 0; t < kt; t++) {
      for (let g = 0; g < v.tm / 8; g++) (v.ablate === 'hoistA' ? hoisted : body).push(`let ag${t}_${g} = ${ldA(`m0 + ${g * 8}u + sg`).replace('kq', v.ablate === 'hoistA' ? `${t}u` : `kq + ${t}u`)};`);
      for (let kk = 0; kk < 4; kk++) for (let q = 0; q < nq; q++) (v.ablate === 'hoistB' ? hoisted : body).push(`let b${t}_${kk}_${q} = ${ldB(`nq + ${q}u`, v.ablate === 'hoistB' ? `${4 * t + kk}u` : v.ablate === 'fixedB' ? `((k + ${4 * t + kk}u) & 7u)` : `k + ${4 * t + kk}u`)};`);
      for (let kk = 0; kk < 4; kk++) for (let i = 0; i < v.tm; i++) {
        const own = `ag${t}_${i >> 3}.${XYZW[kk]}`;
        (v.interleave || v.block ? rowBroadcasts[i]! : body).push(`let s${t}_${kk}_${i} = vec4<f32>(${v.ablate === 'noBroadcast' ? `${own} + ${i}.0` : `${v.shuffle ? 'subgroupShuffle' : 'subgroupBroadcast'}(${own}, ${i & 7}u)`});`);
      }
    }
    if (v.block) {
      for (let ib = 0; ib < v.tm; ib += v.block) {
        const rows = Array.from({ length: v.block }, (_, r) => ib + r);
        for (const i of rows) body.push(...rowBroadcasts[i]!);
        for (let q = 0; q < nq; q++) {
          const prev = new Map(rows.map((i) => [i, `c${i}_${q}`]));
          for (let t = 0; t < kt; t++) for (let kk = 0; kk < 4; kk++) for (const i of rows) {
            const name = `x${i}_${q}_${t}_${kk}`;
            body.push(`let ${name} = fma(s${t}_${kk}_${i}, b${t}_${kk}_${q}, ${prev.get(i)});`);
            prev.set(i, name);
          }
          for (const i of rows) body.push(`c${i}_${q} = ${prev.get(i)};`);
        }
      }
    } else
    for (let i = 0; i < v.tm; i++) {
      body.push(...rowBroadcasts[i]!);
      for (let q = 0; q < nq; q++) {
        let e = `c${i}_${q}`;
        for (let t = 0; t < kt; t++) for (let kk = 0; kk < 4; kk++) e = `fma(s${t}_${kk}_${i}, b${t}_${kk}_${q}, ${e})`;
        body.push(`c${i}_${q} = ${e};`);
      }
    }
  } else {
  if (v.kind === 'subgroup') {
    for (let g = 0; g < v.tm / 8; g++) body.push(`let ag${g} = ${ldA(`m0 + ${g * 8}u + sg`)};`);
  } else {
    for (let i = 0; i < v.tm; i++) body.push(`let a${i} = ${ldA(`m0 + ${i}u`)};`);
  }
  for (let kk = 0; kk < 4; kk++) {
    for (let q = 0; q < nq; q++) body.push(`let b${kk}_${q} = ${ldB(`nq + ${q}u`, `k + ${kk}u`)};`);
    for (let i = 0; i < v.tm; i++) {
      const a = v.kind === 'subgroup' ? `${v.shuffle ? 'subgroupShuffle' : 'subgroupBroadcast'}(ag${i >> 3}.${XYZW[kk]}, ${i & 7}u)` : `a${i}.${XYZW[kk]}`;
      if (v.kind === 'subgroup') body.push(`let s${kk}_${i} = ${a};`);
      for (let q = 0; q < nq; q++) body.push(`c${i}_${q} = fma(vec4<f32>(${v.kind === 'subgroup' ? `s${kk}_${i}` : a}), b${kk}_${q}, c${i}_${q});`);
    }
  }
  }
  const stores: string[] = [];
  for (let i = 0; i < v.tm; i++) {
    for (let q = 0; q < nq; q++) {
      if (!guarded) stores.push(`C[((m0 + ${i}u) * p.N) / 4u + nq + ${q}u] = c${i}_${q};`);
      else for (let c = 0; c < 4; c++) stores.push(`if (m0 + ${i}u < p.M && (nq + ${q}u) * 4u + ${c}u < p.N) { Cs[(m0 + ${i}u) * p.N + (nq + ${q}u) * 4u + ${c}u] = c${i}_${q}.${XYZW[c]}; }`);
    }
  }
  const decl =
    v.kind === 'buffer'
      ? '@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;\n@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;'
      : arrayTex ? '@group(0) @binding(0) var A: texture_storage_2d_array<rgba32float, read>;\n@group(0) @binding(1) var B: texture_storage_2d_array<rgba32float, read>;'
      : '@group(0) @binding(0) var A: texture_storage_2d<rgba32float, read>;\n@group(0) @binding(1) var B: texture_storage_2d<rgba32float, read>;';
  // subgroup: one subgroup (8 lanes along n) per workgroup row shares m0
  const m0 = v.kind === 'subgroup' ? `(wid.y * ${v.wy}u + lid.y) * ${v.tm}u` : `g.y * ${v.tm}u`;
  return `${v.kind === 'subgroup' ? 'enable subgroups;' : ''}
struct P { M: u32, N: u32, K: u32, _p: u32 }
${decl}
@group(0) @binding(2) var<storage, read_write> ${guarded ? 'Cs: array<f32>' : 'C: array<vec4<f32>>'};
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${v.wx}, ${v.wy})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>${v.kind === 'subgroup' ? ', @builtin(subgroup_invocation_id) sg: u32' : ''}) {
  let m0 = ${m0};
  let nq = g.x * ${nq}u;
  ${v.panelB ? 'let nl = nq % 16u; let pb = (nq / 16u) * p.K;' : ''}
  ${acc.join(' ')}
  ${hoisted.join('\n  ')}
  for (var k = 0u; k < p.K; k += ${4 * Math.max(1, v.chain ?? 0)}u) {
    let kq = k / 4u;
    ${v.barrier ? `if ((kq % ${v.barrier}u) == 0u) { workgroupBarrier(); }` : ''}
    ${body.join('\n    ')}
  }
  ${stores.join('\n  ')}
}`;
}

const VARIANTS: Variant[] = [
  { name: 'buffer 4×8 (in-tree direct)', kind: 'buffer', tm: 4, tn: 8, wx: 8, wy: 8 },
  { name: 'texture 4×8', kind: 'texture', tm: 4, tn: 8, wx: 8, wy: 8 },
  { name: 'texture 4×4', kind: 'texture', tm: 4, tn: 4, wx: 8, wy: 8 },
  { name: 'subgroup 8×4', kind: 'subgroup', tm: 8, tn: 4, wx: 8, wy: 8 },
  { name: 'subgroup 16×4', kind: 'subgroup', tm: 16, tn: 4, wx: 8, wy: 4 },
  { name: 'subgroup 8×8', kind: 'subgroup', tm: 8, tn: 8, wx: 8, wy: 8 },
  { name: 'subgroup 8×8 (shuffle)', kind: 'subgroup', tm: 8, tn: 8, wx: 8, wy: 8, shuffle: true },
  { name: 'subgroup 8×8 chained', kind: 'subgroup', tm: 8, tn: 8, wx: 8, wy: 8, chain: 1 },
  { name: 'subgroup 8×8 chained ×2', kind: 'subgroup', tm: 8, tn: 8, wx: 8, wy: 8, chain: 2 },
  { name: 'subgroup 16×8 chained', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1 },
  { name: 'subgroup 16×8 chained ablate hoistA', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, ablate: 'hoistA' },
  { name: 'subgroup 16×8 chained ablate hoistB', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, ablate: 'hoistB' },
  { name: 'subgroup 16×8 chained ablate fixedB', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, ablate: 'fixedB' },
  { name: 'subgroup 16×8 chained ablate noBroadcast', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, ablate: 'noBroadcast' },
  { name: 'subgroup 16×8 chained barrier/4', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, barrier: 4 },
  { name: 'subgroup 16×8 chained barrier/16', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, barrier: 16 },
  { name: 'subgroup 16×8 chained barrier/64', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, barrier: 64 },
  { name: 'subgroup 16×8 chained wg 8×1', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 1, chain: 1 },
  { name: 'subgroup 16×8 chained wg 8×8', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 8, chain: 1 },
  { name: 'subgroup 16×8 chained (shuffle)', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, shuffle: true },
  { name: 'subgroup 32×4 chained', kind: 'subgroup', tm: 32, tn: 4, wx: 8, wy: 2, chain: 1 },
  { name: 'subgroup 32×8 chained', kind: 'subgroup', tm: 32, tn: 8, wx: 8, wy: 2, chain: 1 },
  { name: 'subgroup 16×12 chained', kind: 'subgroup', tm: 16, tn: 12, wx: 8, wy: 4, chain: 1 },
  { name: 'subgroup 24×8 chained', kind: 'subgroup', tm: 24, tn: 8, wx: 8, wy: 4, chain: 1 },
  { name: 'subgroup 16×4 chained', kind: 'subgroup', tm: 16, tn: 4, wx: 8, wy: 4, chain: 1 },
  { name: 'subgroup 16×4 chained ×2', kind: 'subgroup', tm: 16, tn: 4, wx: 8, wy: 4, chain: 2 },
  { name: 'subgroup 16×8 chained interleaved', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, interleave: true },
  { name: 'subgroup 16×12 chained interleaved', kind: 'subgroup', tm: 16, tn: 12, wx: 8, wy: 4, chain: 1, interleave: true },
  { name: 'subgroup 32×8 chained interleaved', kind: 'subgroup', tm: 32, tn: 8, wx: 8, wy: 2, chain: 1, interleave: true },
  { name: 'subgroup 32×8 chained interleaved wg 8×4', kind: 'subgroup', tm: 32, tn: 8, wx: 8, wy: 4, chain: 1, interleave: true },
  { name: 'subgroup 16×8 blocked 4', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, block: 4 },
  { name: 'subgroup 16×8 blocked 2', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, block: 2 },
  { name: 'subgroup 16×8 blocked 8', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, block: 8 },
  { name: 'subgroup 16×8 blocked 4 ×2', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 2, block: 4 },
  { name: 'subgroup 32×8 blocked 4', kind: 'subgroup', tm: 32, tn: 8, wx: 8, wy: 2, chain: 1, block: 4 },
  { name: 'subgroup 16×16 blocked 4', kind: 'subgroup', tm: 16, tn: 16, wx: 8, wy: 4, chain: 1, block: 4 },
  { name: 'subgroup 16×8 chained array', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, engineLike: 'array' },
  { name: 'subgroup 16×8 chained guarded', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, engineLike: 'guarded' },
  { name: 'subgroup 16×8 chained array guarded', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, engineLike: 'both' },
  { name: 'subgroup 64×4 chained', kind: 'subgroup', tm: 64, tn: 4, wx: 8, wy: 1, chain: 1 },
  { name: 'subgroup 32×8 chained wg 8×4', kind: 'subgroup', tm: 32, tn: 8, wx: 8, wy: 4, chain: 1 },
  { name: 'subgroup 16×8 chained panelB', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 1, panelB: true },
  { name: 'subgroup 32×8 chained panelB', kind: 'subgroup', tm: 32, tn: 8, wx: 8, wy: 2, chain: 1, panelB: true },
  { name: 'subgroup 32×8 chained panelB wg 8×4', kind: 'subgroup', tm: 32, tn: 8, wx: 8, wy: 4, chain: 1, panelB: true },
  { name: 'subgroup 32×4 chained panelB', kind: 'subgroup', tm: 32, tn: 4, wx: 16, wy: 2, chain: 1, panelB: true },
  { name: 'subgroup 16×8 chained ×2 panelB', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 2, panelB: true },
  { name: 'subgroup 16×16 chained', kind: 'subgroup', tm: 16, tn: 16, wx: 8, wy: 4, chain: 1 },
  { name: 'subgroup 16×16 chained (shuffle)', kind: 'subgroup', tm: 16, tn: 16, wx: 8, wy: 4, chain: 1, shuffle: true },
  { name: 'subgroup 16×12 chained (shuffle)', kind: 'subgroup', tm: 16, tn: 12, wx: 8, wy: 4, chain: 1, shuffle: true },
  { name: 'subgroup 16×12 chained ×2', kind: 'subgroup', tm: 16, tn: 12, wx: 8, wy: 4, chain: 2 },
  { name: 'subgroup 8×16 chained', kind: 'subgroup', tm: 8, tn: 16, wx: 8, wy: 8, chain: 1 },
  { name: 'subgroup 24×12 chained', kind: 'subgroup', tm: 24, tn: 12, wx: 8, wy: 4, chain: 1 },
  { name: 'subgroup 32×8 chained ×2', kind: 'subgroup', tm: 32, tn: 8, wx: 8, wy: 2, chain: 2 },
  { name: 'subgroup 24×8 chained ×2', kind: 'subgroup', tm: 24, tn: 8, wx: 8, wy: 4, chain: 2 },
  { name: 'subgroup 32×4 chained ×2', kind: 'subgroup', tm: 32, tn: 4, wx: 8, wy: 2, chain: 2 },
  { name: 'subgroup 16×8 chained ×2', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4, chain: 2 },
  { name: 'subgroup 16×8', kind: 'subgroup', tm: 16, tn: 8, wx: 8, wy: 4 },
  { name: 'subgroup 8×16', kind: 'subgroup', tm: 8, tn: 16, wx: 8, wy: 8 },
  { name: 'subgroup 16×16', kind: 'subgroup', tm: 16, tn: 16, wx: 8, wy: 4 },
];

function fmaSource(chains: number, unroll: number): string {
  const decl = Array.from({ length: chains }, (_, c) => `var a${c} = f32(gid.x) * 1e-9 + ${(c + 1) * 0.01};`).join(' ');
  const body: string[] = [];
  for (let u = 0; u < unroll; u++) for (let c = 0; c < chains; c++) body.push(`a${c} = fma(a${c}, m, d);`);
  return `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> p: vec4<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m = bitcast<f32>(p.y); let d = bitcast<f32>(p.z);
  ${decl}
  for (var i = 0u; i < p.x; i++) { ${body.join(' ')} }
  out[gid.x] = ${Array.from({ length: chains }, (_, c) => `a${c}`).join(' + ')};
}`;
}

const dev = await makeRawDevice([], true);
const gpu = dev.device;
console.log(`adapter: ${dev.label}; subgroups ${dev.hasSubgroups ? 'available' : 'NOT available'}; ${M}×${N}×${K}`);

// FMA reference, measured the same way (CPU time per GFLOP)
const fmaOut = gpu.createBuffer({ size: 1 << 20, usage: GPUBufferUsage.STORAGE });
const fmaParams = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
gpu.queue.writeBuffer(fmaParams, 0, new Uint32Array([256, 0x3f7ff972, 0x3a83126f, 0]));
const fmaK = dev.kernel(fmaSource(12, 4), [{ buffer: fmaOut }, { buffer: fmaParams }], [1024]);
const fmaFlops = 64 * 1024 * 256 * 12 * 4 * 2;

const a = new Float32Array(M * K).map(() => Math.random() - 0.5);
const b = new Float32Array(K * N).map(() => Math.random() - 0.5);
const texture = (w: number, h: number, data: Float32Array<ArrayBuffer>): GPUTexture => {
  // --pad-texels P widens each texture row by P texels (row strides off powers of two)
  const t = gpu.createTexture({ size: [w + arg('--pad-texels', 0), h], format: 'rgba32float', usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST });
  gpu.queue.writeTexture({ texture: t }, data, { bytesPerRow: w * 16 }, [w, h]);
  return t;
};
const buffer = (data: Float32Array<ArrayBuffer>): GPUBuffer => {
  const buf = gpu.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  gpu.queue.writeBuffer(buf, 0, data);
  return buf;
};
const At = texture(K / 4, M, a);
const Bt = texture(N / 4, K, b);
// B panel-major (panelB): texel (c, panel·K + k) = B[k, panel·64 + 4c … +3]
const bPanels = new Float32Array(K * N);
for (let pn = 0; pn < N / 64; pn++) for (let k = 0; k < K; k++) for (let c = 0; c < 64; c++) bPanels[(pn * K + k) * 64 + c] = b[k * N + pn * 64 + c]!;
const Bpt = texture(16, K * (N / 64), bPanels);
const Ab = buffer(a);
const Bb = buffer(b);
const C = gpu.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
const readC = gpu.createBuffer({ size: M * N * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
const params = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
gpu.queue.writeBuffer(params, 0, new Uint32Array([M, N, K, 0]));

async function maxError(): Promise<number> {
  const enc = gpu.createCommandEncoder();
  enc.copyBufferToBuffer(C, 0, readC, 0, M * N * 4);
  gpu.queue.submit([enc.finish()]);
  await readC.mapAsync(GPUMapMode.READ);
  const got = new Float32Array(readC.getMappedRange().slice(0));
  readC.unmap();
  let err = 0;
  for (let s = 0; s < 256; s++) {
    const i = (s * 7919) % M;
    const j = (s * 104729) % N;
    let r = 0;
    for (let k = 0; k < K; k++) r += a[i * K + k]! * b[k * N + j]!;
    err = Math.max(err, Math.abs(r - got[i * N + j]!));
  }

  return err;
}

const flops = 2 * M * N * K;
const rows: string[] = [];
let fmaBest = Infinity;
const fmaAll: number[] = [];
const median = (xs: number[]): number => [...xs].sort((p, q) => p - q)[xs.length >> 1]!;
const only = args.includes('--only') ? args[args.indexOf('--only') + 1]! : '';
const kernels = VARIANTS.filter((v) => (v.kind !== 'subgroup' || dev.hasSubgroups) && only.split('|').some((o) => v.name === o || (!only.includes('|') && v.name.includes(o)))).map((v) => {
  const t0 = performance.now();
  const arrayTex = v.engineLike === 'array' || v.engineLike === 'both';
  const view = (t: GPUTexture): GPUTextureView => t.createView(arrayTex ? { dimension: '2d-array' } : {});
  const res: GPUBindingResource[] = v.kind === 'buffer' ? [{ buffer: Ab }, { buffer: Bb }] : [view(At), view(Bt)];
  if (v.panelB) res[1] = Bpt.createView();
  const k = dev.kernel(source(v), [...res, { buffer: C }, { buffer: params }], [N / v.tn / v.wx, M / v.tm / v.wy]);
  return { v, k, built: performance.now() - t0, cpu: Infinity, gpu: Infinity, err: 0, cpus: [] as number[] };
});
if (args.includes('--engine')) {
  // the engine's kernel (kernels/matmulTexture.ts) as it is, on the same textures
  const u = gpu.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  gpu.queue.writeBuffer(u, 0, new Uint32Array([M, N, K / 4, 1, 1, 0, 0, 0]));
  // B panel-major in layers, as the engine packs it
  const Bl = gpu.createTexture({ size: [16, K, N / 64], format: 'rgba32float', usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST });
  gpu.queue.writeTexture({ texture: Bl }, bPanels, { bytesPerRow: 256, rowsPerImage: K }, [16, K, N / 64]);
  for (const tm of [16, 32]) {
    const v: Variant = { name: `engine kernel ${tm}×8 (in-tree)`, kind: 'subgroup', tm, tn: 8, wx: 8, wy: 4 };
    const t0 = performance.now();
    const k = dev.kernel(engineMultiplySource(tm, false), [At.createView({ dimension: '2d-array' }), Bl.createView({ dimension: '2d-array' }), { buffer: C }, { buffer: u }], [N / 64, M / (tm * 4)]);
    kernels.push({ v, k, built: performance.now() - t0, cpu: Infinity, gpu: Infinity, err: 0, cpus: [] });
  }
}
for (const x of kernels) {
  const t0 = performance.now();
  await rawTime(dev, [x.k], 1, 0);
  x.built += performance.now() - t0;
  x.err = await maxError();
}
for (let round = 0; round < arg('--rounds', 3); round++) {
  const f = (await rawTime(dev, [fmaK], 2, 1)).cpuMs;
  fmaBest = Math.min(fmaBest, f);
  fmaAll.push(f);
  for (const x of kernels) {
    const t = await rawTime(dev, [x.k], 1, 1);
    x.cpu = Math.min(x.cpu, t.cpuMs);
    x.cpus.push(t.cpuMs);
    x.gpu = Math.min(x.gpu, t.gpuMs);
  }
}
const fmaRate = fmaFlops / (fmaBest * 1e6);
console.log(`FMA loop: ${fmaRate.toFixed(1)} GFLOP per CPU-second`);
for (const x of kernels) {
  const coveredN = Math.floor(N / (x.v.tn * x.v.wx)) * x.v.tn * x.v.wx;
  const coveredM = Math.floor(M / (x.v.tm * x.v.wy)) * x.v.tm * x.v.wy;
  const r = (flops * (coveredN / N) * (coveredM / M)) / (x.cpu * 1e6);
  rows.push(
    `${x.v.name.padEnd(30)} ${r.toFixed(2).padStart(6)} GFLOP/cpu-s  ${((r / fmaRate) * 100).toFixed(0).padStart(3)}% of FMA   ` +
      `median ${(((flops * (coveredN / N) * (coveredM / M)) / (median(x.cpus) * 1e6) / (fmaFlops / (median(fmaAll) * 1e6))) * 100).toFixed(0).padStart(3)}%  ` +
      `GPU ${x.gpu.toFixed(1).padStart(7)} ms${coveredN < N || coveredM < M ? ` (covers ${coveredM}×${coveredN})` : ''}  first use ${(x.built / 1000).toFixed(1)} s  max |err| ${x.err.toExponential(1)}`,
  );
}
console.log(rows.join('\n'));
dev.destroy();
