// Batched matmul C[b] = op(A[b])·op(B[b]) (+ bias) on the large-tile GEMM family
// (kernels/gemmLarge.ts): the discrete-GPU kernels for products that fill the GPU.
// Same operands, options and bindings as kernels/matmul.ts's kernels. Quads along
// the contiguous dimension load as one vec4 where it is a multiple of 4 (A along k,
// or m when transposed; B along n, or k when transposed; C stored along n), else as
// four neighbouring scalars.
// Operands may be f16 (shader-f16): A and B as f16 arrays, C and bias f32.
import type { Device } from '../gpu/device.ts';
import type { AdapterProfile } from '../gpu/device.ts';
import type { GemmTile } from '../gpu/policy.ts';
import { type Elem, type GemmOperand, LARGE_TILES, TILE_128, TILE_128x64, TILE_64x128, gemmSource, quadBody, tileKey, tileName } from './gemmLarge.ts';
import type { MatmulOptions } from './matmulOptions.ts';
import type { Operand } from './operand.ts';
import { UniformWriter, isSoftwareAdapter } from './common.ts';
import { withF16 } from './cast.ts';

/** Workgroups a product must fill before the large tiles pay on a discrete GPU (an H200 has 132 SMs). */
export const LARGE_MIN_WORKGROUPS = 128;
/** Shortest K worth the large tiles (the tile's loads amortised over its math). */
export const LARGE_MIN_K = 64;

/** The large tile for this product on a non-software adapter, or null when it is too small to fill the GPU. */
export function largeMatmulTile(p: AdapterProfile, o: Pick<MatmulOptions, 'M' | 'N' | 'K' | 'batch'>): GemmTile | null {
  if (isSoftwareAdapter(p) || o.K < LARGE_MIN_K) return null;
  // largest tile that at least one full tile of each dimension fills and that gives enough workgroups
  for (const t of [TILE_128, TILE_128x64, TILE_64x128]) {
    if (o.M >= t.bm && o.N >= t.bn && Math.ceil(o.M / t.bm) * Math.ceil(o.N / t.bn) * o.batch >= LARGE_MIN_WORKGROUPS) return t;
  }
  return null;
}

export { LARGE_TILES, tileName };

interface Spec {
  tile: GemmTile;
  elem: Elem;
  transA: boolean;
  transB: boolean;
  hasBias: boolean;
  vecA: boolean;
  vecB: boolean;
  vecC: boolean;
}

function source(s: Spec): string {
  const E = s.elem;
  const decls = /* wgsl */ `
struct Params { M: u32, N: u32, K: u32, strideA: u32, strideB: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<storage, read> A: array<${s.vecA ? `vec4<${E}>` : E}>;
@group(0) @binding(1) var<storage, read> B: array<${s.vecB ? `vec4<${E}>` : E}>;
@group(0) @binding(2) var<storage, read_write> C: array<${s.vecC ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(3) var<uniform> p: Params;
${s.hasBias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
var<private> aBase: u32;
var<private> bBase: u32;
var<private> cBase: u32;

// quads along each operand's contiguous dimension (gemmLarge.ts aQuads, bQuads)
// A is ${s.transA ? 'K×M: ldA(m, k) = A[m..m+3][k]' : 'M×K: ldA(m, k) = A[m][k..k+3]'}
fn ldA(m: u32, k: u32) -> vec4<${E}> {
  ${
    s.transA
      ? s.vecA
        ? quadBody('A', E, () => '', () => '', { idx: '(aBase + k * p.M + m) / 4u', ok: 'm < p.M && k < p.K' })
        : quadBody('A', E, (c) => `aBase + k * p.M + m + ${c}u`, (c) => `m + ${c}u < p.M && k < p.K`)
      : s.vecA
        ? quadBody('A', E, () => '', () => '', { idx: '(aBase + m * p.K + k) / 4u', ok: 'm < p.M && k < p.K' })
        : quadBody('A', E, (c) => `aBase + m * p.K + k + ${c}u`, (c) => `m < p.M && k + ${c}u < p.K`)
  }
}
// B is ${s.transB ? 'N×K: ldB(k, n) = B[k..k+3][n]' : 'K×N: ldB(k, n) = B[k][n..n+3]'}
fn ldB(k: u32, n: u32) -> vec4<${E}> {
  ${
    s.transB
      ? s.vecB
        ? quadBody('B', E, () => '', () => '', { idx: '(bBase + n * p.K + k) / 4u', ok: 'k < p.K && n < p.N' })
        : quadBody('B', E, (c) => `bBase + n * p.K + k + ${c}u`, (c) => `k + ${c}u < p.K && n < p.N`)
      : s.vecB
        ? quadBody('B', E, () => '', () => '', { idx: '(bBase + k * p.N + n) / 4u', ok: 'k < p.K && n < p.N' })
        : quadBody('B', E, (c) => `bBase + k * p.N + n + ${c}u`, (c) => `k < p.K && n + ${c}u < p.N`)
  }
}
fn st(m: u32, n: u32, acc: vec4<f32>) {
  if (m >= p.M) { return; }
  ${s.hasBias ? 'let v = acc + vec4<f32>(bias[min(n, p.N - 1u)], bias[min(n + 1u, p.N - 1u)], bias[min(n + 2u, p.N - 1u)], bias[min(n + 3u, p.N - 1u)]);' : 'let v = acc;'}
  ${
    s.vecC
      ? 'if (n < p.N) { C[(cBase + m * p.N + n) / 4u] = v; }'
      : [0, 1, 2, 3].map((c) => `if (n + ${c}u < p.N) { C[cBase + m * p.N + n + ${c}u] = v[${c}]; }`).join('\n  ')
  }
}`;
  return gemmSource(s.tile, {
    elem: E,
    what: `matmul${s.transA ? ' Aᵀ' : ''}${s.transB ? ' Bᵀ' : ''}${s.hasBias ? ' +bias' : ''}`,
    decls,
    setup: 'aBase = z * p.strideA; bBase = z * p.strideB; cBase = z * p.M * p.N; let kBegin = 0u; let kEnd = p.K;',
    aQuads: s.transA ? 'km' : 'mk',
    bQuads: s.transB ? 'nk' : 'kn',
  });
}

/**
 * Records C = op(A)·op(B) (+ bias) with the large tile `tile`. `elem` 'f16': A and B
 * hold f16 (the device must have shader-f16), C and the bias f32.
 */
export function matmulLarge(device: Device, a: GemmOperand, b: GemmOperand, c: Operand, o: MatmulOptions, tile: GemmTile, elem: Elem = 'f32'): void {
  // policy precision f16: f32 operands cast to f16 first (f32 accumulation and result)
  if (elem === 'f32' && device.policy.precision === 'f16') return withF16(device, [a, b], ([ha, hb]) => matmulLarge(device, ha!, hb!, c, o, tile, 'f16'));
  if (elem === 'f16' && !device.hasShaderF16) throw new Error(`matmul with f16 operands: the adapter '${device.label}' has no shader-f16`);
  const k4 = o.K % 4 === 0;
  const s: Spec = {
    tile,
    elem,
    transA: o.transA,
    transB: o.transB,
    hasBias: o.bias !== undefined,
    // vec4 loads along the contiguous dimension (batch strides M·K, K·N stay multiples of 4)
    vecA: o.transA ? o.M % 4 === 0 : k4,
    vecB: o.transB ? k4 : o.N % 4 === 0,
    vecC: o.N % 4 === 0,
  };
  const strideA = o.batchA === 1 ? 0 : o.M * o.K;
  const strideB = o.batchB === 1 ? 0 : o.K * o.N;
  const u = device.uniforms(new UniformWriter().u32(o.M, o.N, o.K, strideA, strideB, 0, 0, 0).bytes());
  const bindings: (GPUBuffer | GPUBufferBinding)[] = [a.buffer, b.buffer, c.buffer, u];
  if (o.bias) bindings.push(o.bias.buffer);
  const key = `matmul-large:${tileKey(tile)}:${JSON.stringify({ ...s, tile: undefined })}`;
  const label = `matmul${o.transA ? ' Aᵀ' : ''}${o.transB ? ' Bᵀ' : ''}${s.hasBias ? ' +bias' : ''} (large ${tile.bm}×${tile.bn}${tile.double ? ' db' : ''}${elem === 'f16' ? ', f16' : ''})`;
  const pipeline = device.pipeline(key, label, () => source(s));
  device.dispatch(pipeline, bindings, [Math.ceil(o.N / tile.bn), Math.ceil(o.M / tile.bm), o.batch]);
}
