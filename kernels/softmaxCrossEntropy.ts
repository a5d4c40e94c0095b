// Fused softmax cross-entropy over logits [N, C] with integer labels [N],
// optional label smoothing ε (target = (1−ε)·onehot + ε/C), mean over the batch.
//
// Forward: one workgroup; each thread takes rows lid, lid+256, …, computes the
// row's log-sum-exp with the max subtracted (stable for any logit scale), keeps it
// for the backward, and the per-row losses are tree-summed in workgroup memory.
// An out-of-range label makes the loss NaN, so bad labels never train silently.
// Backward: one thread per logit, dz = g · (softmax(z) − target) / N, with g the
// upstream gradient read from its GPU buffer (no readback).
import type { Device } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, grid1d } from './common.ts';

const FWG = 256;

const forwardSource = /* wgsl */ `
const FWG = ${FWG}u;
struct Params { N: u32, C: u32, smoothing: f32, nanBits: u32 }
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
var<workgroup> partial: array<f32, FWG>;

@compute @workgroup_size(${FWG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = 0.0;
  for (var row = lid.x; row < p.N; row += FWG) {
    let base = row * p.C;
    var m = z[base];
    for (var c = 1u; c < p.C; c++) { m = max(m, z[base + c]); }
    var s = 0.0;
    var zsum = 0.0;
    for (var c = 0u; c < p.C; c++) {
      let v = z[base + c];
      s += exp(v - m);
      zsum += v;
    }
    let l = m + log(s);
    lse[row] = l;
    let y = labels[row];
    if (y < 0 || u32(y) >= p.C) {
      acc += bitcast<f32>(p.nanBits); // NaN: label out of range (a runtime value: WGSL rejects a NaN constant)
    } else {
      let zy = z[base + u32(y)];
      // −Σ t·log softmax = lse − (1−ε)·z_y − ε/C·Σ z
      acc += l - (1.0 - p.smoothing) * zy - p.smoothing / f32(p.C) * zsum;
    }
  }
  partial[lid.x] = acc;
  workgroupBarrier();
  for (var s = FWG / 2u; s > 0u; s = s / 2u) {
    if (lid.x < s) { partial[lid.x] += partial[lid.x + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { loss[0] = partial[0] / f32(p.N); }
}`;

const backwardSource = /* wgsl */ `
const WG = ${WG}u;
struct Params { N: u32, C: u32, smoothing: f32, nanBits: u32 }
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<storage, read> gradLoss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.N * p.C) { return; }
  let row = i / p.C;
  let c = i % p.C;
  let sm = exp(z[i] - lse[row]);
  var t = p.smoothing / f32(p.C);
  if (i32(c) == labels[row]) { t += 1.0 - p.smoothing; }
  dz[i] = gradLoss[0] * (sm - t) / f32(p.N);
}`;

function params(device: Device, N: number, C: number, smoothing: number): GPUBufferBinding {
  return device.uniforms(new UniformWriter().u32(N, C).f32(smoothing).u32(0x7fc00000).bytes());
}

export function softmaxCrossEntropyForward(
  device: Device, logits: Operand, labels: Operand, loss: Operand, lse: Operand, smoothing: number,
): void {
  const [N, C] = logits.shape as [number, number];
  const pipeline = device.pipeline('sce:fwd', 'softmax cross-entropy forward', () => forwardSource);
  device.dispatch(pipeline, [logits.buffer, labels.buffer, loss.buffer, lse.buffer, params(device, N, C, smoothing)], [1]);
}

export function softmaxCrossEntropyBackward(
  device: Device, logits: Operand, labels: Operand, lse: Operand, gradLoss: Operand, dz: Operand, smoothing: number,
): void {
  const [N, C] = logits.shape as [number, number];
  const pipeline = device.pipeline('sce:bwd', 'softmax cross-entropy backward', () => backwardSource);
  device.dispatch(
    pipeline,
    [logits.buffer, labels.buffer, lse.buffer, gradLoss.buffer, dz.buffer, params(device, N, C, smoothing)],
    grid1d(N * C),
  );
}
