// Row-wise argmax of [N, C] (first index on ties, like PyTorch/NumPy), and the
// fraction of rows whose argmax equals the label, reduced in one workgroup so
// accuracy needs no readback until the caller asks for it.
import type { Device } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, grid1d } from './common.ts';

const argmaxSource = /* wgsl */ `
const WG = ${WG}u;
struct Params { N: u32, C: u32 }
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;
@group(0) @binding(2) var<uniform> p: Params;

fn argmaxRow(row: u32) -> u32 {
  let base = row * p.C;
  var best = 0u;
  var m = z[base];
  for (var c = 1u; c < p.C; c++) {
    let v = z[base + c];
    if (v > m) { m = v; best = c; }
  }
  return best;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = ${FLAT_INDEX};
  if (row >= p.N) { return; }
  out[row] = i32(argmaxRow(row));
}`;

const accuracySource = /* wgsl */ `
const AWG = 256u;
struct Params { N: u32, C: u32 }
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> partial: array<u32, AWG>;

@compute @workgroup_size(AWG)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var hits = 0u;
  for (var row = lid.x; row < p.N; row += AWG) {
    let base = row * p.C;
    var best = 0u;
    var m = z[base];
    for (var c = 1u; c < p.C; c++) {
      let v = z[base + c];
      if (v > m) { m = v; best = c; }
    }
    if (i32(best) == labels[row]) { hits++; }
  }
  partial[lid.x] = hits;
  workgroupBarrier();
  for (var s = AWG / 2u; s > 0u; s = s / 2u) {
    if (lid.x < s) { partial[lid.x] += partial[lid.x + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { out[0] = f32(partial[0]) / f32(p.N); }
}`;

export function argmaxKernel(device: Device, x: Operand, out: Operand): void {
  const [N, C] = x.shape as [number, number];
  const pipeline = device.pipeline('argmax', 'argmax', () => argmaxSource);
  device.dispatch(pipeline, [x.buffer, out.buffer, device.uniforms(new UniformWriter().u32(N, C).bytes())], grid1d(N));
}

export function accuracyKernel(device: Device, logits: Operand, labels: Operand, out: Operand): void {
  const [N, C] = logits.shape as [number, number];
  const pipeline = device.pipeline('accuracy', 'accuracy', () => accuracySource);
  device.dispatch(pipeline, [logits.buffer, labels.buffer, out.buffer, device.uniforms(new UniformWriter().u32(N, C).bytes())], [1]);
}
