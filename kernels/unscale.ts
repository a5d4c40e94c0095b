// The dynamic loss scaler's kernels (engine/gradScaler.ts), its state on the GPU so
// that no step waits for a readback. The state is four words:
//   [0] scale (f32)  [1] found: an inf or NaN seen this step (u32, atomic)
//   [2] clean steps since the last growth or backoff (u32)  [3] steps skipped so far (u32)
// Per step: unscaleAndCheck over every gradient (g *= 1/scale, raising found on a
// non-finite result: PyTorch's _amp_foreach_non_finite_check_and_unscale_), the SGD
// update gated by found (kernels/sgd.ts), then scalerUpdate: backoff or growth, found
// cleared, and the next backward's seed (the loss gradient) set to the new scale.
import type { Device } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, grid1d } from './common.ts';

/** Byte offset of the `found` word: the SGD kernel's gate. */
export const SCALER_FOUND_OFFSET = 4;
export const SCALER_STATE_BYTES = 16;

const STATE = /* wgsl */ `struct ScalerState { scale: f32, found: atomic<u32>, tracker: u32, skipped: u32 }`;

const unscaleSource = /* wgsl */ `
const WG = ${WG}u;
${STATE}
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read_write> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> s: ScalerState;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
  let v = g[i] * (1.0 / s.scale); // a power of two: exact
  g[i] = v;
  // inf and NaN have every exponent bit set (a comparison would be folded away under fast math)
  if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) { atomicMax(&s.found, 1u); }
}`;

/** Records g *= 1/scale in place, raising the state's found flag if any result is inf or NaN. */
export function unscaleAndCheck(device: Device, g: Operand, state: GPUBuffer): void {
  if (g.dtype !== 'f32') throw new Error(`unscaleAndCheck: parameter gradients are f32, got ${g.dtype}`);
  const pipeline = device.pipeline('unscale-check', 'grad scaler: unscale and check', () => unscaleSource);
  device.dispatch(pipeline, [g.buffer, state, device.uniforms(new UniformWriter().u32(g.size).bytes())], grid1d(g.size), { read: g.size * 4 });
}

const updateSource = /* wgsl */ `
${STATE}
struct Params { growth: f32, backoff: f32, interval: u32 }
@group(0) @binding(0) var<storage, read_write> s: ScalerState;
@group(0) @binding(1) var<storage, read_write> seed: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(1)
fn main() {
  if (atomicLoad(&s.found) != 0u) {
    s.scale = s.scale * p.backoff;
    s.tracker = 0u;
    s.skipped = s.skipped + 1u;
  } else {
    s.tracker = s.tracker + 1u;
    if (s.tracker >= p.interval) {
      s.scale = s.scale * p.growth;
      s.tracker = 0u;
    }
  }
  atomicStore(&s.found, 0u);
  seed[0] = s.scale;
}`;

/** Records the scale's update after a step (backoff on an overflow, growth after `interval` clean steps) and the next seed. */
export function scalerUpdate(device: Device, state: GPUBuffer, seed: Operand, o: { growth: number; backoff: number; interval: number }): void {
  const pipeline = device.pipeline('grad-scaler-update', 'grad scaler: update the scale', () => updateSource);
  const u = new UniformWriter().f32(o.growth, o.backoff).u32(o.interval).bytes();
  device.dispatch(pipeline, [state, seed.buffer, device.uniforms(u)], [1, 1]);
}
