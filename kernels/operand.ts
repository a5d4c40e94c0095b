// What a kernel is given: a GPU buffer and the shape of the data in it. Kernels know
// nothing of tensors or autograd; engine/ passes its tensors, which have these fields.
export type Shape = readonly number[];

export interface Operand {
  readonly buffer: GPUBuffer;
  readonly shape: Shape;
  /** elements: the product of the shape */
  readonly size: number;
  readonly dtype: 'f32' | 'i32';
}
