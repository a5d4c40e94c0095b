// The fused SGD-momentum update: weight decay, momentum, Nesterov and the step
// in one pass over a parameter, reading w, g and v once and writing w and v.
//
// Forms (μ momentum, λ weight decay, d dampening, η learning rate):
//   pytorch: g' = g + λw; v = μv + (1−d)g' (v = g' on the first step); w −= η·(nesterov ? g' + μv : v)
//   caffe:   v = μv − η(g + λw); w += v           (Smith's experiments; differs when η moves fast)
//   decoupled weight decay (either form): w −= ηλw, and g' = g
// Gated (half-precision training's loss scaler, kernels/unscale.ts): nothing is
// written when the scaler's found word is set, so a step with non-finite gradients
// leaves weights and velocities as they were, decided on the GPU without a readback.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import type { Device } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, grid1d } from './common.ts';
import { SCALER_FOUND_OFFSET, SCALER_STATE_BYTES } from './unscale.ts';

export type SgdForm = 'pytorch' | 'caffe';

export interface SgdKernelParams {
  lr: number;
  momentum: number;
  weightDecay: number;
  dampening: number;
  nesterov: boolean;
  decoupled: boolean;
  form: SgdForm;
  /** first step: PyTorch initialises the velocity to the gradient */
  first: boolean;
}

const source = (form: SgdForm, nesterov: boolean, decoupled: boolean, gated: boolean): string => wgsl`
const WG = ${WG}u;
struct Params { n: u32, first: u32, lr: f32, momentum: f32, weightDecay: f32, dampening: f32 }
@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#if ${gated}
@group(0) @binding(4) var<storage, read> gate: array<u32>;
#endif

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
#if ${gated}
  if (gate[${SCALER_FOUND_OFFSET / 4}] != 0u) { return; }
#endif
  var wi = w[i];
#if ${decoupled}
  let gi = g[i];
  wi = wi - p.lr * p.weightDecay * wi;
#else
  let gi = g[i] + p.weightDecay * wi;
#endif
#if ${form === 'caffe'}
  let vi = p.momentum * v[i] - p.lr * gi;
  v[i] = vi;
  w[i] = wi + vi;
#else
  var vi = gi;
  if (p.first == 0u) { vi = p.momentum * v[i] + (1.0 - p.dampening) * gi; }
  v[i] = vi;
#if ${nesterov}
  w[i] = wi - p.lr * (gi + p.momentum * vi);
#else
  w[i] = wi - p.lr * vi;
#endif
#endif
}`;

/** Records the update of one parameter; with `gate` (a loss scaler's state) only where its found word is clear. */
export function sgdUpdate(device: Device, w: Operand, g: Operand, v: Operand, p: SgdKernelParams, gate?: GPUBuffer): void {
  const gated = gate !== undefined;
  const key = `sgd:${p.form}:${p.nesterov}:${p.decoupled}:${gated}`;
  const pipeline = device.pipeline(key, `sgd update (${p.form}${p.nesterov ? ', nesterov' : ''}${p.decoupled ? ', decoupled wd' : ''}${gated ? ', gated' : ''})`, () =>
    source(p.form, p.nesterov, p.decoupled, gated),
  );
  const u = new UniformWriter().u32(w.size, p.first ? 1 : 0).f32(p.lr, p.momentum, p.weightDecay, p.dampening);
  const bindings = [w.buffer, g.buffer, v.buffer, device.uniforms(u.bytes())];
  if (gate) bindings.push({ buffer: gate, offset: 0, size: SCALER_STATE_BYTES });
  device.dispatch(pipeline, bindings, grid1d(w.size), { read: 2 * w.size * 4 }); // w and v are read too
}
