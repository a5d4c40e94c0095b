// Batched matrix multiply C[b] = op(A[b]) · op(B[b]), op = identity or transpose,
// row-major, batch dimension broadcast when an operand has batch 1.
//
// Tiling: a workgroup of 16×16 threads computes a 64×64 tile of C; each thread a
// 4×4 register block (16 accumulators). K is walked in slices of 16 staged in
// workgroup memory, loaded so that consecutive threads read consecutive addresses
// whatever the transposition. Edges are zero-filled, so any M, N, K works.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import type { Device } from '../engine/device.ts';
import type { Tensor } from '../engine/tensor.ts';
import { UniformWriter } from './common.ts';

const BM = 64;
const BN = 64;
const BK = 16;
const TM = 4;
const TN = 4;
const THREADS = (BM / TM) * (BN / TN); // 256

export interface MatmulOptions {
  transA: boolean;
  transB: boolean;
  /** batch counts of A and B (1 = broadcast) and of C */
  batchA: number;
  batchB: number;
  batch: number;
  M: number;
  N: number;
  K: number;
  /** optional bias of length N added to every row (fused linear layer) */
  bias?: Tensor | undefined;
}

const source = (transA: boolean, transB: boolean, hasBias: boolean): string => wgsl`
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

/** Records C = op(A)·op(B) (+ bias). Shapes are the caller's to check. */
export function matmulKernel(device: Device, a: Tensor, b: Tensor, c: Tensor, o: MatmulOptions): void {
  const hasBias = o.bias !== undefined;
  const key = `matmul:${o.transA}:${o.transB}:${hasBias}`;
  const pipeline = device.pipeline(key, `matmul${o.transA ? ' Aᵀ' : ''}${o.transB ? ' Bᵀ' : ''}${hasBias ? ' +bias' : ''}`, () =>
    source(o.transA, o.transB, hasBias),
  );
  const strideA = o.batchA === 1 ? 0 : o.M * o.K;
  const strideB = o.batchB === 1 ? 0 : o.K * o.N;
  const u = device.uniforms(new UniformWriter().u32(o.M, o.N, o.K, strideA, strideB, 0, 0, 0).bytes());
  const bindings: (GPUBuffer | GPUBufferBinding)[] = [a.buffer, b.buffer, c.buffer, u];
  if (o.bias) bindings.push(o.bias.buffer);
  device.dispatch(pipeline, bindings, [Math.ceil(o.N / BN), Math.ceil(o.M / BM), o.batch]);
}
