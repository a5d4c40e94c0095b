// C = A·B on the tensor cores through Dawn's experimental subgroup matrices
// (chromium-experimental-subgroup-matrix; the device has it only under the
// allow_unsafe_apis toggle): f16 operands (kernels/cast.ts), f32 result. One subgroup
// per workgroup computes 4×4 result matrices of the adapter's f16×f16→f32 shape
// (16×16×16 on the H200: a 64×64 tile), loading its fragments straight from storage.
// Port of bench/gpu/matmul-sweep.ts's subgroupMatrix, measured on an H200 at 73
// TFLOP/s for 4096³ (the f32 FMA kernels: ≤ 34). Row-major A (M×K) and B (K×N), no
// batch, M and N multiples of the tile, K of the shape's K: not yet planned for any
// engine op (it runs from bench/gpu/kernels.ts); checked against the f32 kernels on
// the first GPU run (test/f16-kernels.test.ts skips without the feature).
import type { Device, SubgroupMatrixConfig } from '../gpu/device.ts';
import type { GemmOperand } from './gemmLarge.ts';
import type { Operand } from './operand.ts';
import { UniformWriter } from './common.ts';

const FM = 4;
const FN = 4;

/** The adapter's f16×f16→f32 shape, or null. */
export function subgroupMatrixConfig(device: Pick<Device, 'subgroupMatrixConfigs'>): SubgroupMatrixConfig | null {
  return device.subgroupMatrixConfigs.find((c) => c.componentType === 'f16' && c.resultComponentType === 'f32') ?? null;
}

/** Why this product cannot run on the subgroup-matrix kernel, or null. */
export function subgroupMatrixProblem(device: Pick<Device, 'subgroupMatrixConfigs' | 'hasShaderF16'>, M: number, N: number, K: number): string | null {
  const c = subgroupMatrixConfig(device);
  if (!c || !device.hasShaderF16) return 'the device has no f16 subgroup matrices (needs Dawn\'s allow_unsafe_apis toggle and shader-f16)';
  if (M % (FM * c.M) || N % (FN * c.N) || K % c.K) return `needs M % ${FM * c.M} == 0, N % ${FN * c.N} == 0, K % ${c.K} == 0 (got ${M}×${N}×${K})`;
  return null;
}

function source(c: SubgroupMatrixConfig, subgroupSize: number): string {
  const L: string[] = [];
  L.push(`// matmul on subgroup matrices ${c.M}×${c.N}×${c.K}, ${FM}×${FN} per subgroup (kernels/matmulSubgroupMatrix.ts)
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
alias Left = subgroup_matrix_left<f16, ${c.K}, ${c.M}>;
alias Right = subgroup_matrix_right<f16, ${c.N}, ${c.K}>;
alias Res = subgroup_matrix_result<f32, ${c.N}, ${c.M}>;
struct Params { M: u32, N: u32, K: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@compute @workgroup_size(${subgroupSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
  let m0 = wid.y * ${FM * c.M}u;
  let n0 = wid.x * ${FN * c.N}u;`);
  for (let i = 0; i < FM; i++) for (let j = 0; j < FN; j++) L.push(`  var acc_${i}_${j} = Res();`);
  L.push(`  for (var k = 0u; k < p.K; k += ${c.K}u) {`);
  for (let i = 0; i < FM; i++) L.push(`    let a${i} = subgroupMatrixLoad<Left, row_major>(&A, (m0 + ${i * c.M}u) * p.K + k, p.K);`);
  for (let j = 0; j < FN; j++) L.push(`    let b${j} = subgroupMatrixLoad<Right, row_major>(&B, k * p.N + n0 + ${j * c.N}u, p.N);`);
  for (let i = 0; i < FM; i++) for (let j = 0; j < FN; j++) L.push(`    acc_${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc_${i}_${j});`);
  L.push('  }');
  for (let i = 0; i < FM; i++) for (let j = 0; j < FN; j++) L.push(`  subgroupMatrixStore<row_major>(&C, (m0 + ${i * c.M}u) * p.N + n0 + ${j * c.N}u, acc_${i}_${j}, p.N);`);
  L.push('}');
  return L.join('\n');
}

/** Records C (f32, M×N) = A·B for f16 A (M×K) and B (K×N), row-major. */
export function matmulSubgroupMatrix(device: Device, a: GemmOperand, b: GemmOperand, c: Operand, M: number, N: number, K: number): void {
  const problem = subgroupMatrixProblem(device, M, N, K);
  if (problem) throw new Error(`matmulSubgroupMatrix: ${problem}`);
  const cfg = subgroupMatrixConfig(device)!;
  // one subgroup per workgroup: the adapter's largest subgroup size
  const info = device.adapterInfo as GPUAdapterInfo & { subgroupMaxSize?: number };
  const sg = info.subgroupMaxSize ?? 32;
  const pipeline = device.pipeline(`matmul-sgmatrix:${cfg.M}x${cfg.N}x${cfg.K}:${sg}`, `matmul (subgroup matrices ${cfg.M}×${cfg.N}×${cfg.K}, f16)`, () => source(cfg, sg));
  const u = device.uniforms(new UniformWriter().u32(M, N, K, 0).bytes());
  device.dispatch(pipeline, [a.buffer, b.buffer, c.buffer, u], [N / (FN * cfg.N), M / (FM * cfg.M), 1]);
}
