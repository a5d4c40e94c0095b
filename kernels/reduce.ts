// Sum-reduction of a tensor to a broadcast-compatible smaller shape (the
// backward of broadcasting, bias gradients, sum/mean). One workgroup per output
// element; its 256 threads stride over the reduced elements and combine in
// workgroup memory by a tree, so no single f32 accumulator sees the whole sum.
import type { Device } from '../gpu/device.ts';
import { type FloatType, type Operand, floatType } from './operand.ts';
import { UniformWriter, enableF16, grid1d, pad6 } from './common.ts';

const RWG = 256;

// x and out stored as f32 or f16; the sum is f32
const sumToSource = (tx: FloatType, to: FloatType): string => /* wgsl */ `
${enableF16(tx, to)}
const RWG = ${RWG}u;
struct Params {
  nOut: u32, nRed: u32, scale: f32, _p: u32,
  inStride: array<vec4<u32>, 2>,
  outShape: array<vec4<u32>, 2>,
  redShape: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<storage, read> xs: array<${tx}>;
@group(0) @binding(1) var<storage, read_write> out: array<${to}>;
@group(0) @binding(2) var<uniform> p: Params;
var<workgroup> partial: array<f32, RWG>;

fn dim(v: array<vec4<u32>, 2>, d: u32) -> u32 { return v[d / 4u][d % 4u]; }

// Offset in the input of coordinates given by index i over shape s.
fn offsetOf(i: u32, s: array<vec4<u32>, 2>) -> u32 {
  var rest = i;
  var off = 0u;
  for (var d = 5i; d >= 0i; d--) {
    let size = dim(s, u32(d));
    off += (rest % size) * dim(p.inStride, u32(d));
    rest = rest / size;
  }
  return off;
}

@compute @workgroup_size(${RWG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = wid.x + wid.y * nwg.x;
  var acc = 0.0;
  if (o < p.nOut) {
    let base = offsetOf(o, p.outShape);
    for (var r = lid.x; r < p.nRed; r += RWG) {
      acc += f32(xs[base + offsetOf(r, p.redShape)]);
    }
  }
  partial[lid.x] = acc;
  workgroupBarrier();
  for (var s = RWG / 2u; s > 0u; s = s / 2u) {
    if (lid.x < s) { partial[lid.x] += partial[lid.x + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u && o < p.nOut) { out[o] = ${to}(partial[0] * p.scale); }
}`;

/**
 * out = scale · (x summed over every dimension where `out` has size 1 and x does not).
 * `out.shape` must broadcast to `x.shape` (left-padded with 1s).
 */
export function sumTo(device: Device, x: Operand, out: Operand, scale = 1): void {
  const inShape = pad6(x.shape);
  const outShape = pad6(out.shape);
  const redShape = inShape.map((d, i) => (outShape[i] === 1 ? d : 1));
  const inStride = new Array<number>(6);
  let s = 1;
  for (let i = 5; i >= 0; i--) {
    inStride[i] = s;
    s *= inShape[i]!;
  }
  let nRed = 1;
  for (const d of redShape) nRed *= d;
  const tx = floatType(x, 'sumTo');
  const to = floatType(out, 'sumTo');
  const pipeline = device.pipeline(`sumTo:${tx}:${to}`, `sumTo (reduce)${tx === 'f32' && to === 'f32' ? '' : ` ${tx}→${to}`}`, () => sumToSource(tx, to));
  const w = new UniformWriter().u32(out.size, nRed).f32(scale).u32(0);
  w.u32(...inStride, 0, 0).u32(...outShape, 0, 0).u32(...redShape, 0, 0);
  device.dispatch(pipeline, [x.buffer, out.buffer, device.uniforms(w.bytes())], grid1d(out.size, 1));
}
