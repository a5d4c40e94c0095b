// The adapter's own limits, measured: a register-only FMA loop (GFLOP/s) and a
// copy kernel (GB/s, bytes read + bytes written). Every other figure in the
// bench is also given as a fraction of these.
//
// FMA: each invocation runs `ACC` independent accumulator chains (vec4 or f32)
// through `iters` fma()s; the loop bound comes from a uniform so nothing folds,
// and the accumulators are summed into one store so nothing is eliminated.
// Independent chains hide the FMA latency (on lavapipe each invocation is one
// lane of an 8-wide AVX2 vector, so an f32 chain is one ymm register and a vec4
// chain four). Several shapes are tried; the best is the peak.
//
// Copy: dst[i] = src[i] over buffers larger than the last-level cache, in a few
// shapes (vec4 or f32, one or several elements per invocation); the best is the
// peak. The queue's copyBufferToBuffer is measured too, for reference: on a
// software adapter it is a memcpy, and kernels there are bound by the cost of
// each (per-lane) access rather than by bandwidth, so a kernel whose data sits in
// cache can exceed the copy kernel's figure.
import type { Device } from '../gpu/device.ts';
import { UniformWriter, grid1d } from '../kernels/common.ts';

export interface FmaVariant {
  /** accumulator chains per invocation */
  chains: number;
  vec: 1 | 4;
  workgroup: number;
  /** fma()s per chain per loop iteration (amortises the loop's own cost) */
  unroll: number;
}

const fmaSource = (v: FmaVariant): string => {
  const t = v.vec === 4 ? 'vec4<f32>' : 'f32';
  const decl: string[] = [];
  const body: string[] = [];
  for (let c = 0; c < v.chains; c++) {
    decl.push(`var a${c} = ${t}(f32(gid.x) * 1e-9 + ${(c + 1) * 0.01});`);
    // x·0.999 + 0.001 stays bounded for any number of iterations
  }
  for (let u = 0; u < v.unroll; u++) for (let c = 0; c < v.chains; c++) body.push(`a${c} = fma(a${c}, m, d);`);
  const sum = Array.from({ length: v.chains }, (_, c) => `a${c}`).join(' + ');
  return /* wgsl */ `
struct Params { iters: u32, mul: f32, add: f32, _p: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<${t}>;
@group(0) @binding(1) var<uniform> p: Params;
@compute @workgroup_size(${v.workgroup})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let m = ${t}(p.mul);
  let d = ${t}(p.add);
  ${decl.join('\n  ')}
  for (var i = 0u; i < p.iters; i++) {
    ${body.join('\n    ')}
  }
  out[gid.x + gid.y * nwg.x * ${v.workgroup}u] = ${sum};
}`;
};

export interface FmaCase {
  variant: FmaVariant;
  flops: number;
  record: () => void;
  dispose: () => void;
}

/**
 * An FMA-loop case doing about `flopsTarget` flops per repetition over `invocations`
 * invocations (64K keep lavapipe's two cores busy; a discrete GPU needs ~1M to fill its SMs).
 */
export function fmaCase(device: Device, v: FmaVariant, flopsTarget: number, invocations = 64 * 1024): FmaCase {
  const perIter = 2 * v.chains * v.vec * v.unroll;
  const iters = Math.max(1, Math.round(flopsTarget / (invocations * perIter)));
  const flops = invocations * perIter * iters;
  const out = device.gpu.createBuffer({ size: invocations * 4 * v.vec, usage: GPUBufferUsage.STORAGE });
  const key = `bench:fma:${v.chains}:${v.vec}:${v.workgroup}:${v.unroll}`;
  const pipeline = device.pipeline(key, `bench fma ${v.chains}×${v.vec === 4 ? 'vec4' : 'f32'}×${v.unroll} wg${v.workgroup}`, () => fmaSource(v));
  const grid = grid1d(invocations, v.workgroup);
  return {
    variant: v,
    flops,
    record: () => {
      const u = device.uniforms(new UniformWriter().u32(iters).f32(0.999, 0.001).u32(0).bytes());
      device.dispatch(pipeline, [out, u], grid);
    },
    dispose: () => out.destroy(),
  };
}

export const FMA_VARIANTS: FmaVariant[] = [
  { chains: 8, vec: 1, workgroup: 64, unroll: 1 },
  { chains: 8, vec: 1, workgroup: 64, unroll: 8 },
  { chains: 12, vec: 1, workgroup: 64, unroll: 1 },
  { chains: 12, vec: 1, workgroup: 64, unroll: 4 },
  { chains: 12, vec: 1, workgroup: 64, unroll: 8 },
  { chains: 16, vec: 1, workgroup: 64, unroll: 4 },
  { chains: 4, vec: 4, workgroup: 64, unroll: 4 },
  { chains: 12, vec: 1, workgroup: 256, unroll: 8 },
];

export interface CopyVariant {
  vec: 1 | 4;
  /** elements per invocation (strided by the workgroup so lanes stay adjacent) */
  per: number;
  workgroup: number;
}

export const COPY_VARIANTS: CopyVariant[] = [
  { vec: 4, per: 1, workgroup: 256 },
  { vec: 4, per: 4, workgroup: 64 },
  { vec: 1, per: 8, workgroup: 64 },
];

const copySource = (v: CopyVariant): string => {
  const t = v.vec === 4 ? 'vec4<f32>' : 'f32';
  const body = Array.from({ length: v.per }, (_, j) => `{ let i = base + ${j * v.workgroup}u; if (i < p.n) { dst[i] = src[i]; } }`);
  return /* wgsl */ `
struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<storage, read> src: array<${t}>;
@group(0) @binding(1) var<storage, read_write> dst: array<${t}>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${v.workgroup})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let base = (wid.x + wid.y * nwg.x) * ${v.workgroup * v.per}u + li;
  ${body.join('\n  ')}
}`;
};

export interface CopyCase {
  bytes: number;
  variant: CopyVariant | 'copyBufferToBuffer';
  record: () => void;
  dispose: () => void;
}

/**
 * Copies `bytes` (read `bytes`, write `bytes`) per repetition with a kernel, or
 * with the queue's copyBufferToBuffer (a memcpy on a software adapter: the
 * memory system's bandwidth, which no kernel there approaches).
 */
export function copyCase(device: Device, bytes: number, v: CopyVariant | 'copyBufferToBuffer' = COPY_VARIANTS[0]!): CopyCase {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const size = Math.ceil(bytes / 16) * 16;
  const src = device.gpu.createBuffer({ size, usage });
  const dst = device.gpu.createBuffer({ size, usage });
  const dispose = (): void => {
    src.destroy();
    dst.destroy();
  };
  if (v === 'copyBufferToBuffer') {
    return { bytes: size * 2, variant: v, record: () => device.copy(src, 0, dst, 0, size), dispose };
  }
  const n = size / (4 * v.vec);
  const key = `bench:copy:${v.vec}:${v.per}:${v.workgroup}`;
  const pipeline = device.pipeline(key, `bench copy ${v.vec === 4 ? 'vec4' : 'f32'}×${v.per} wg${v.workgroup}`, () => copySource(v));
  const grid = grid1d(Math.ceil(n / v.per), v.workgroup);
  return {
    bytes: size * 2,
    variant: v,
    record: () => {
      const u = device.uniforms(new UniformWriter().u32(n, 0, 0, 0).bytes());
      device.dispatch(pipeline, [src, dst, u], grid);
    },
    dispose,
  };
}
