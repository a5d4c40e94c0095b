// f32 ↔ f16 conversion of a buffer (shader-f16): the operands of the f16 kernels
// (kernels/matmulLarge.ts, conv2dLarge.ts with elem 'f16') are made from f32 tensors
// by castToF16, and f16 results read back by castToF32. f16 buffers hold elements
// in pairs (vec2<f16>, one 4-byte word per thread: no two threads write the same
// word), so their byte size is 4·ceil(n / 2); an odd tail element is paired with 0.
// Rounding is WGSL's f16(x): round to nearest even, ±inf beyond 65504.
import type { Device } from '../gpu/device.ts';
import { type Operand, bytesOf } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, grid1d } from './common.ts';

/** Bytes of a buffer holding n f16 elements. */
export const f16Bytes = (n: number): number => bytesOf('f16', n);

// Host-side f16 (Node 20 has no Float16Array): for uploads and readbacks of f16 tensors.
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * The f16 bits of x, rounded to nearest even as WGSL's f16(x); ±inf beyond 65504 (and past
 * the rounding edge), NaN kept. x is first rounded to f32 (as an f32 tensor's values are,
 * which the GPU cast then rounds again): a double within an f32 ulp of a tie may round
 * differently from a direct double → f16 rounding.
 */
export function toHalfBits(x: number): number {
  f32Scratch[0] = x;
  const b = u32Scratch[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal
    const m = man | 0x800000; // implicit bit
    const shift = 14 - e; // 24-bit significand down to the subnormal's 10 bits
    const half = 1 << (shift - 1);
    let r = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (man >>> 13);
  const rest = man & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++; // a carry into the exponent is right (up to inf)
  return sign | r;
}

/** The value of f16 bits h. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** f16 words (element pairs, as an f16 buffer holds them) from f32 values. */
export function encodeHalves(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(2 * Math.ceil(values.length / 2));
  for (let i = 0; i < values.length; i++) out[i] = toHalfBits(values[i]!);
  return out;
}

/** The first n values of f16 data read back from a buffer. */
export function decodeHalves(bytes: ArrayBuffer, n: number): Float32Array {
  const h = new Uint16Array(bytes, 0, n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = fromHalfBits(h[i]!);
  return out;
}

const toF16Source = /* wgsl */ `
enable f16;
const WG = ${WG}u;
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec2<f16>>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (2u * i >= p.n) { return; }
  let hi = select(0.0, src[min(2u * i + 1u, p.n - 1u)], 2u * i + 1u < p.n);
  dst[i] = vec2<f16>(f16(src[2u * i]), f16(hi));
}`;

const toF32Source = /* wgsl */ `
enable f16;
const WG = ${WG}u;
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> src: array<vec2<f16>>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${FLAT_INDEX};
  if (2u * i >= p.n) { return; }
  let v = vec2<f32>(src[i]);
  dst[2u * i] = v.x;
  if (2u * i + 1u < p.n) { dst[2u * i + 1u] = v.y; }
}`;

function needF16(device: Device, what: string): void {
  if (!device.hasShaderF16) throw new Error(`${what}: the adapter '${device.label}' has no shader-f16`);
}

/** Records dst (f16 pairs, f16Bytes(src.size) bytes at least) = f16(src). */
export function castToF16(device: Device, src: Pick<Operand, 'buffer' | 'size'>, dst: GPUBuffer): void {
  needF16(device, 'castToF16');
  if (dst.size < f16Bytes(src.size)) throw new Error(`castToF16: ${src.size} elements need ${f16Bytes(src.size)} bytes, the buffer has ${dst.size}`);
  const pipeline = device.pipeline('cast f32→f16', 'cast f32→f16', () => toF16Source);
  device.dispatch(pipeline, [src.buffer, dst, device.uniforms(new UniformWriter().u32(src.size).bytes())], grid1d(Math.ceil(src.size / 2)));
}

/** Records dst = f32(src) for dst.size elements of the f16 buffer src. */
export function castToF32(device: Device, src: GPUBuffer, dst: Pick<Operand, 'buffer' | 'size'>): void {
  needF16(device, 'castToF32');
  if (src.size < f16Bytes(dst.size)) throw new Error(`castToF32: ${dst.size} elements need ${f16Bytes(dst.size)} bytes, the buffer has ${src.size}`);
  const pipeline = device.pipeline('cast f16→f32', 'cast f16→f32', () => toF32Source);
  device.dispatch(pipeline, [src, dst.buffer, device.uniforms(new UniformWriter().u32(dst.size).bytes())], grid1d(Math.ceil(dst.size / 2)));
}

/**
 * Runs `fn` on f16 copies of f32 operands (pooled buffers, returned to the pool
 * after it records: the queue orders their reuse after the work that reads them).
 */
export function withF16<T>(device: Device, ops: Pick<Operand, 'buffer' | 'size'>[], fn: (halves: { buffer: GPUBuffer; size: number }[]) => T): T {
  const pooled = ops.map((o) => device.acquire(f16Bytes(o.size)));
  try {
    ops.forEach((o, i) => castToF16(device, o, pooled[i]!.buffer));
    return fn(ops.map((o, i) => ({ buffer: pooled[i]!.buffer, size: o.size })));
  } finally {
    pooled.forEach((b) => device.release(b));
  }
}
