// What a kernel is given: a GPU buffer and the shape of the data in it. Kernels know
// nothing of tensors or autograd; engine/ passes its tensors, which have these fields.
export type Shape = readonly number[];

/** Element types: f32 and f16 (shader-f16: half-precision activations and gradients) floats, i32 labels. */
export type DType = 'f32' | 'f16' | 'i32';
/** What float data is stored as; kernels compute in f32 either way. */
export type FloatType = 'f32' | 'f16';

export interface Operand {
  readonly buffer: GPUBuffer;
  readonly shape: Shape;
  /** elements: the product of the shape */
  readonly size: number;
  readonly dtype: DType;
}

/**
 * Bytes of a buffer holding n elements of a dtype. f16 data is whole 4-byte words
 * (the cast kernels write element pairs, one word per thread), so 4·ceil(n / 2).
 */
export function bytesOf(dtype: DType, n: number): number {
  return dtype === 'f16' ? 4 * Math.ceil(n / 2) : 4 * n;
}

/** The float storage type of an operand; labels (i32) are refused with the kernel's name. */
export function floatType(o: Pick<Operand, 'dtype'>, what: string): FloatType {
  if (o.dtype === 'i32') throw new Error(`${what}: expected f32 or f16 data, got i32`);
  return o.dtype;
}
