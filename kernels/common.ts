// Helpers every kernel dispatcher shares: 1-D grids that stay inside the
// 65535-workgroups-per-dimension limit, uniform packing, and broadcast strides.
import type { AdapterProfile } from '../gpu/device.ts';
import type { FloatType, Shape } from './operand.ts';

export const WG = 256;

/** Whether the adapter is a CPU rasteriser (lavapipe/llvmpipe, SwiftShader), where kernels want other shapes than on GPUs. */
export function isSoftwareAdapter(device: AdapterProfile): boolean {
  return device.isSoftwareAdapter;
}

/** Whether every subgroup has exactly 8 lanes (lavapipe on AVX2): what the texture kernels are written for. */
export function hasSubgroupsOf8(device: AdapterProfile): boolean {
  return device.hasSubgroups && device.subgroupSize === 8;
}

/** WGSL element type and zero of a kernel that walks f32 data as scalars or as vec4. */
export function vecElem(vec4: boolean): { T: string; Z: string } {
  return vec4 ? { T: 'vec4<f32>', Z: 'vec4<f32>(0.0)' } : { T: 'f32', Z: '0.0' };
}

/**
 * WGSL storage element of float data stored as f32 or f16 (shader-f16), walked as
 * scalars or as vec4. Kernels compute in f32: loads go through `f32(…)`/`vec4<f32>(…)`
 * (identity on f32 data) and stores through this type's constructor.
 */
export function storeElem(t: FloatType, vec4: boolean): string {
  return vec4 ? `vec4<${t}>` : t;
}

/** WGSL: a stored float value (expr) as the f32 compute type. */
export function loadF32(vec4: boolean, expr: string): string {
  return vec4 ? `vec4<f32>(${expr})` : `f32(${expr})`;
}

/** WGSL module head: `enable f16;` where any binding is stored as f16 (else nothing). */
export function enableF16(...types: FloatType[]): string {
  return types.includes('f16') ? 'enable f16;' : '';
}

/** Workgroup counts covering `n` invocations of `wg` threads, folded into y past the limit. */
export function grid1d(n: number, wg = WG, maxPerDim = 65535): [number, number] {
  const groups = Math.ceil(n / wg);
  if (groups <= maxPerDim) return [groups, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}

/** WGSL: the flat invocation index of a grid made by grid1d (needs wid/lid/nwg builtins). */
export const FLAT_INDEX = /* wgsl */ `(wid.x + wid.y * nwg.x) * WG + lid.x`;

/** Packs a uniform block of u32/i32/f32 fields, each 4 bytes, padded to 16. */
export class UniformWriter {
  private view: DataView;
  private buf: ArrayBuffer;
  private pos = 0;
  constructor(maxBytes = 256) {
    this.buf = new ArrayBuffer(maxBytes);
    this.view = new DataView(this.buf);
  }
  u32(...v: number[]): this {
    for (const x of v) {
      this.view.setUint32(this.pos, x, true);
      this.pos += 4;
    }
    return this;
  }
  i32(...v: number[]): this {
    for (const x of v) {
      this.view.setInt32(this.pos, x, true);
      this.pos += 4;
    }
    return this;
  }
  f32(...v: number[]): this {
    for (const x of v) {
      this.view.setFloat32(this.pos, x, true);
      this.pos += 4;
    }
    return this;
  }
  bytes(): Uint8Array {
    return new Uint8Array(this.buf, 0, Math.max(16, Math.ceil(this.pos / 16) * 16));
  }
}

export const MAX_RANK = 6;

/** Left-pads a shape with 1s to MAX_RANK. */
export function pad6(shape: Shape): number[] {
  if (shape.length > MAX_RANK) throw new Error(`rank ${shape.length} exceeds the engine's maximum of ${MAX_RANK}`);
  return [...Array<number>(MAX_RANK - shape.length).fill(1), ...shape];
}

/** Contiguous strides of a (padded) shape, with 0 where a dimension of size 1 broadcasts against `target`. */
export function broadcastStrides(shape: number[], target: number[]): number[] {
  const strides = new Array<number>(shape.length).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = shape[i] === 1 && target[i] !== 1 ? 0 : s;
    s *= shape[i]!;
  }
  return strides;
}

/** NumPy broadcasting of two shapes, or null when they do not broadcast. */
export function broadcastShapes(a: Shape, b: Shape): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}
