// The fused SGD-momentum update: weight decay, momentum, Nesterov and the step
// in one pass over a parameter, reading w, g and v once and writing w and v.
//
// Forms (μ momentum, λ weight decay, d dampening, η learning rate):
//   pytorch: g' = g + λw; v = μv + (1−d)g' (v = g' on the first step); w −= η·(nesterov ? g' + μv : v)
//   caffe:   v = μv − η(g + λw); w += v           (Smith's experiments; differs when η moves fast)
//   decoupled weight decay (either form): w −= ηλw, and g' = g
// Up to sgdSlotsPerDispatch parameters per dispatch, each thread finding its own by
// the flat index: one dispatch per parameter made the update a quarter of a ResNet's.
// Gated (half-precision training's loss scaler, kernels/unscale.ts): nothing is
// written when the scaler's found word is set, so a step with non-finite gradients
// leaves weights and velocities as they were, decided on the GPU without a readback.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import type { AdapterProfile, Binding, Device } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, grid1d } from './common.ts';
import { SCALER_FOUND_OFFSET, SCALER_STATE_BYTES } from './unscale.ts';

export type SgdForm = 'pytorch' | 'caffe';

/** What every parameter of one update shares. */
export interface SgdKernelParams {
  lr: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  decoupled: boolean;
  form: SgdForm;
}

/** One parameter of an update: weights, gradient, velocity, and what is its own. */
export interface SgdSlot {
  w: Operand;
  g: Operand;
  v: Operand;
  weightDecay: number;
  /** its first step: PyTorch initialises the velocity to the gradient */
  first: boolean;
}

/** Most parameters one dispatch updates (the uniform block holds two vec4s of each per-slot field). */
const MAX_SLOTS = 8;

/**
 * How many parameters one dispatch updates: each takes three storage buffers (w, g, v),
 * within the adapter's per-stage limit, one kept for the loss scaler's gate. A ResNet-56
 * has 167 parameter tensors, most of them batchnorm's γ and β of 16-64 values: one
 * dispatch each made the update 167 of a step's ~720 dispatches, and on a GPU at batch
 * 128 a step's host time is proportional to its dispatches (BENCHMARKS.md, "On a GPU").
 */
export function sgdSlotsPerDispatch(profile: Pick<AdapterProfile, 'limits'>): number {
  return Math.max(1, Math.min(MAX_SLOTS, Math.floor((profile.limits.maxStorageBuffersPerShaderStage - 1) / 3)));
}

const XYZW = ['x', 'y', 'z', 'w'] as const;
/** The WGSL expression of slot s's component of a per-slot uniform array. */
const field = (name: string, s: number): string => `p.${name}[${s >> 2}].${XYZW[s & 3]}`;

const source = (slots: number, form: SgdForm, nesterov: boolean, decoupled: boolean, gated: boolean): string => {
  const bindings = Array.from({ length: slots }, (_, s) => `@group(0) @binding(${3 * s}) var<storage, read_write> w${s}: array<f32>;
@group(0) @binding(${3 * s + 1}) var<storage, read> g${s}: array<f32>;
@group(0) @binding(${3 * s + 2}) var<storage, read_write> v${s}: array<f32>;`).join('\n');
  // slot s holds the flat indices [end(s-1), end(s)): the thread finds its slot by comparisons
  const branches = Array.from({ length: slots }, (_, s) => {
    const j = s === 0 ? 'i' : `i - ${field('ends', s - 1)}`;
    return `  if (i < ${field('ends', s)}) {
    let j = ${j};
    let r = update(w${s}[j], g${s}[j], v${s}[j], ${field('decay', s)}, ${field('first', s)} != 0u);
    w${s}[j] = r.x;
    v${s}[j] = r.y;
    return;
  }`;
  }).join('\n');
  return wgsl`
const WG = ${WG}u;
struct Params {
  lr: f32, momentum: f32, dampening: f32, n: u32,
  ends: array<vec4<u32>, 2>, decay: array<vec4<f32>, 2>, first: array<vec4<u32>, 2>,
}
${bindings}
@group(0) @binding(${3 * slots}) var<uniform> p: Params;
#if ${gated}
@group(0) @binding(${3 * slots + 1}) var<storage, read> gate: array<u32>;
#endif

// one element's update: (new w, new v)
fn update(w: f32, g: f32, v: f32, weightDecay: f32, first: bool) -> vec2<f32> {
  var wi = w;
#if ${decoupled}
  let gi = g;
  wi = wi - p.lr * weightDecay * wi;
#else
  let gi = g + weightDecay * wi;
#endif
#if ${form === 'caffe'}
  let vi = p.momentum * v - p.lr * gi;
  return vec2<f32>(wi + vi, vi);
#else
  var vi = gi;
  if (!first) { vi = p.momentum * v + (1.0 - p.dampening) * gi; }
#if ${nesterov}
  return vec2<f32>(wi - p.lr * (gi + p.momentum * vi), vi);
#else
  return vec2<f32>(wi - p.lr * vi, vi);
#endif
#endif
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
#if ${gated}
  if (gate[${SCALER_FOUND_OFFSET / 4}] != 0u) { return; }
#endif
${branches}
}`;
};

/**
 * Records the update of every slot's parameter, sgdSlotsPerDispatch of them per
 * dispatch (in the order given); with `gate` (a loss scaler's state) only where its
 * found word is clear.
 */
export function sgdUpdate(device: Device, slots: readonly SgdSlot[], p: SgdKernelParams, gate?: GPUBuffer): void {
  const per = sgdSlotsPerDispatch(device);
  for (let at = 0; at < slots.length; at += per) recordGroup(device, slots.slice(at, at + per), p, gate);
}

function recordGroup(device: Device, slots: readonly SgdSlot[], p: SgdKernelParams, gate?: GPUBuffer): void {
  const gated = gate !== undefined;
  const k = slots.length;
  const key = `sgd:${k}:${p.form}:${p.nesterov}:${p.decoupled}:${gated}`;
  const what = `${p.form}${p.nesterov ? ', nesterov' : ''}${p.decoupled ? ', decoupled wd' : ''}${gated ? ', gated' : ''}`;
  const pipeline = device.pipeline(key, `sgd update (${what}, ${k} tensor${k > 1 ? 's' : ''})`, () => source(k, p.form, p.nesterov, p.decoupled, gated));
  const ends = new Array<number>(MAX_SLOTS).fill(0);
  const decay = new Array<number>(MAX_SLOTS).fill(0);
  const first = new Array<number>(MAX_SLOTS).fill(0);
  let n = 0;
  slots.forEach((s, i) => {
    if (s.g.size !== s.w.size || s.v.size !== s.w.size) {
      throw new Error(`sgd update: weights of ${s.w.size} values, gradient of ${s.g.size}, velocity of ${s.v.size}`);
    }
    ends[i] = n += s.w.size;
    decay[i] = s.weightDecay;
    first[i] = s.first ? 1 : 0;
  });
  for (let i = k; i < MAX_SLOTS; i++) ends[i] = n;
  const u = new UniformWriter().f32(p.lr, p.momentum, p.dampening).u32(n, ...ends).f32(...decay).u32(...first);
  const bindings: Binding[] = slots.flatMap((s) => [s.w.buffer, s.g.buffer, s.v.buffer]);
  bindings.push(device.uniforms(u.bytes()));
  if (gate) bindings.push({ buffer: gate, offset: 0, size: SCALER_STATE_BYTES });
  device.dispatch(pipeline, bindings, grid1d(n), { read: 2 * n * 4 }); // w and v are read too
}
