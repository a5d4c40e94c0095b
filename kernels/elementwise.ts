// Elementwise kernels: unary maps, binary ops with NumPy broadcasting, and an
// in-place accumulate. One thread per output element; 1-D grid folded into y.
//
// Binary layout: both inputs contiguous; the output index is decomposed over the
// (rank-6 padded) output shape, each input reads at the dot product with its
// broadcast strides (0 on broadcast dimensions). Same-shape inputs skip the
// index arithmetic entirely (specialised with #if).
//
// Sizes that are multiples of 4 run as vec4 (unary maps, same-shape binaries, the
// accumulate, fill): on lavapipe a vec4 access costs little more than a scalar one
// (bench/experiments/lavapipe-loads.ts), so these move ~2-3× the bytes per second.
//
// Each binding is stored as f32 or f16 (half-precision training) independently;
// the arithmetic is f32 (loads convert, stores round), so f16 data is rounded once.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import type { Device } from '../gpu/device.ts';
import { type FloatType, type Operand, bytesOf, floatType } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, broadcastStrides, enableF16, grid1d, loadF32, pad6, storeElem, vecElem } from './common.ts';

export type UnaryOp = 'relu' | 'scale' | 'neg' | 'exp' | 'log' | 'addScalar' | 'copy';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'reluGrad';

// Valid for f32 and vec4<f32> x, with Z the zero of x's type.
const UNARY_EXPR: Record<UnaryOp, string> = {
  relu: 'select(x, Z, x < Z)', // not max(x, 0): max(NaN, 0) is 0 on some adapters (lavapipe), hiding a NaN from the divergence check
  scale: 'x * p.scalar',
  neg: '-x',
  exp: 'exp(x)',
  log: 'log(x)',
  addScalar: 'x + p.scalar',
  copy: 'x',
};

// reluGrad(x, g): the gradient g passes where the relu input x was positive.
const BINARY_EXPR: Record<BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  reluGrad: 'select(Z, b, a > Z)',
};

const unarySource = (op: UnaryOp, vec4: boolean, tx: FloatType, to: FloatType): string => /* wgsl */ `
${enableF16(tx, to)}
const WG = ${WG}u;
const Z = ${vecElem(vec4).Z};
struct Params { n: u32, scalar: f32 }
@group(0) @binding(0) var<storage, read> xs: array<${storeElem(tx, vec4)}>;
@group(0) @binding(1) var<storage, read_write> out: array<${storeElem(to, vec4)}>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
  let x = ${loadF32(vec4, 'xs[i]')};
  out[i] = ${storeElem(to, vec4)}(${UNARY_EXPR[op]});
}`;

/** out = op(x) (each stored as f32 or f16; `copy` between the two is a cast). */
export function unary(device: Device, op: UnaryOp, x: Operand, out: Operand, scalar = 0): void {
  const v4 = x.size % 4 === 0;
  const n = v4 ? x.size / 4 : x.size;
  const tx = floatType(x, `unary ${op}`);
  const to = floatType(out, `unary ${op}`);
  const types = `${tx}${to === tx ? '' : `→${to}`}`;
  const pipeline = device.pipeline(`unary:${op}:${v4}:${tx}:${to}`, `unary ${op}${v4 ? ' (vec4)' : ''}${types === 'f32' ? '' : ` ${types}`}`, () => unarySource(op, v4, tx, to));
  const u = device.uniforms(new UniformWriter().u32(n).f32(scalar).bytes());
  device.dispatch(pipeline, [x.buffer, out.buffer, u], grid1d(n));
}

// vec4 only with sameShape (the broadcast path indexes single elements)
const binarySource = (op: BinaryOp, sameShape: boolean, vec4: boolean, ta: FloatType, tb: FloatType, to: FloatType): string => wgsl`
${enableF16(ta, tb, to)}
const WG = ${WG}u;
const Z = ${vecElem(vec4).Z};
struct Params {
  n: u32, _p0: u32, _p1: u32, _p2: u32,
  shape: array<vec4<u32>, 2>,
  sa: array<vec4<u32>, 2>,
  sb: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<storage, read> as_: array<${storeElem(ta, vec4)}>;
@group(0) @binding(1) var<storage, read> bs: array<${storeElem(tb, vec4)}>;
@group(0) @binding(2) var<storage, read_write> out: array<${storeElem(to, vec4)}>;
@group(0) @binding(3) var<uniform> p: Params;

fn dim(v: array<vec4<u32>, 2>, d: u32) -> u32 { return v[d / 4u][d % 4u]; }

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
#if ${sameShape}
  let a = ${loadF32(vec4, 'as_[i]')};
  let b = ${loadF32(vec4, 'bs[i]')};
#else
  var rest = i;
  var ia = 0u;
  var ib = 0u;
  for (var d = 5i; d >= 0i; d--) {
    let size = dim(p.shape, u32(d));
    let c = rest % size;
    rest = rest / size;
    ia += c * dim(p.sa, u32(d));
    ib += c * dim(p.sb, u32(d));
  }
  let a = ${loadF32(vec4, 'as_[ia]')};
  let b = ${loadF32(vec4, 'bs[ib]')};
#endif
  out[i] = ${storeElem(to, vec4)}(${BINARY_EXPR[op]});
}`;

/** out = a ∘ b with broadcasting; `out` must already have the broadcast shape. */
export function binary(device: Device, op: BinaryOp, a: Operand, b: Operand, out: Operand): void {
  const same = a.size === out.size && b.size === out.size;
  const v4 = same && out.size % 4 === 0;
  const n = v4 ? out.size / 4 : out.size;
  const [ta, tb, to] = [a, b, out].map((o) => floatType(o, `binary ${op}`)) as [FloatType, FloatType, FloatType];
  const types = ta === tb && tb === to ? ta : `${ta},${tb}→${to}`;
  const pipeline = device.pipeline(`binary:${op}:${same}:${v4}:${ta}:${tb}:${to}`, `binary ${op}${v4 ? ' (vec4)' : ''}${types === 'f32' ? '' : ` ${types}`}`, () => binarySource(op, same, v4, ta, tb, to));
  const shape = pad6(out.shape);
  const sa = broadcastStrides(pad6(a.shape), shape);
  const sb = broadcastStrides(pad6(b.shape), shape);
  const w = new UniformWriter().u32(n, 0, 0, 0);
  w.u32(...shape, 0, 0).u32(...sa, 0, 0).u32(...sb, 0, 0);
  device.dispatch(pipeline, [a.buffer, b.buffer, out.buffer, device.uniforms(w.bytes())], grid1d(n));
}

const axpySource = (vec4: boolean, td: FloatType, ts: FloatType): string => /* wgsl */ `
${enableF16(td, ts)}
const WG = ${WG}u;
struct Params { n: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read_write> dst: array<${storeElem(td, vec4)}>;
@group(0) @binding(1) var<storage, read> src: array<${storeElem(ts, vec4)}>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i >= p.n) { return; }
  dst[i] = ${storeElem(td, vec4)}(${loadF32(vec4, 'dst[i]')} + p.alpha * ${loadF32(vec4, 'src[i]')});
}`;

/** dst += alpha·src, in place (gradient accumulation). */
export function axpyInPlace(device: Device, dst: Operand, src: Operand, alpha = 1): void {
  if (dst.size !== src.size) throw new Error(`axpy: sizes differ (${dst.size} vs ${src.size})`);
  const v4 = dst.size % 4 === 0;
  const n = v4 ? dst.size / 4 : dst.size;
  const td = floatType(dst, 'axpy');
  const ts = floatType(src, 'axpy');
  const pipeline = device.pipeline(`axpy:${v4}:${td}:${ts}`, `axpy (accumulate)${td === 'f32' && ts === 'f32' ? '' : ` ${ts}→${td}`}`, () => axpySource(v4, td, ts));
  const u = device.uniforms(new UniformWriter().u32(n).f32(alpha).bytes());
  device.dispatch(pipeline, [dst.buffer, src.buffer, u], grid1d(n), { read: bytesOf(td, dst.size) }); // dst is read too
}

const fillSource = (vec4: boolean, t: FloatType): string => /* wgsl */ `
${enableF16(t)}
const WG = ${WG}u;
struct Params { n: u32, value: f32 }
@group(0) @binding(0) var<storage, read_write> out: array<${storeElem(t, vec4)}>;
@group(0) @binding(1) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (i < p.n) { out[i] = ${storeElem(t, vec4)}(${loadF32(vec4, 'p.value')}); }
}`;

/** out = value everywhere: a dispatch, so filling never forces a submit as a host upload would. */
export function fill(device: Device, out: Operand, value: number): void {
  const v4 = out.size % 4 === 0;
  const n = v4 ? out.size / 4 : out.size;
  // an i32 buffer gets the f32 bits (zeros are all a caller asks of one)
  const t = out.dtype === 'f16' ? 'f16' : 'f32';
  const pipeline = device.pipeline(`fill:${v4}:${t}`, `fill${t === 'f16' ? ' f16' : ''}`, () => fillSource(v4, t));
  const u = device.uniforms(new UniformWriter().u32(n).f32(value).bytes());
  device.dispatch(pipeline, [out.buffer, u], grid1d(n));
}
