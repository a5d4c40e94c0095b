// The dynamic loss scaler's per-step pass over each gradient (engine/gradScaler.ts):
// g *= 1/scale in place, and a flag raised when any element is inf or NaN (after
// unscaling: what PyTorch's GradScaler checks, _amp_foreach_non_finite_check_and_unscale_).
// One flag word for all the step's gradients, read back once.
import type { Device } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, grid1d } from './common.ts';

const source = /* wgsl */ `
const WG = ${WG}u;
struct Params { n: u32, inv: f32 }
@group(0) @binding(0) var<storage, read_write> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> flag: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
  let v = g[i] * p.inv;
  g[i] = v;
  // inf and NaN have every exponent bit set (a comparison would be folded away under fast math)
  if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) { atomicMax(&flag[0], 1u); }
}`;

/** Records g *= inv in place and raises flag[0] (a u32 the caller zeroed) if any result is inf or NaN. */
export function unscaleAndCheck(device: Device, g: Operand, inv: number, flag: GPUBuffer): void {
  const pipeline = device.pipeline('unscale-check', 'grad scaler: unscale and check', () => source);
  device.dispatch(pipeline, [g.buffer, flag, device.uniforms(new UniformWriter().u32(g.size).f32(inv).bytes())], grid1d(g.size));
}
