// Per-step scalars (a step's loss, its accuracy) copied on the GPU into a small ring
// buffer and read back together every `size` steps, so no step waits for a readback.
// The training loop (fit.ts) and the GPU range test (rangetest/rangeTest.ts) share it.
import type { Device } from '../gpu/device.ts';
import { type Tensor, empty, keep } from '../engine/tensor.ts';

export class ReadbackRing<T> {
  private readonly ring: Tensor;
  private pending: T[] = [];

  /** `size` steps of `perStep` f32 values each */
  constructor(
    private readonly device: Device,
    readonly size: number,
    readonly perStep: number,
  ) {
    this.ring = keep(empty(device, [size, perStep]));
  }

  /** steps recorded and not read back yet */
  get count(): number {
    return this.pending.length;
  }

  get full(): boolean {
    return this.pending.length === this.size;
  }

  /**
   * Reserves the next step's slot, remembering `meta` for it; copy the step's values
   * to byte `offset` of `buffer` (in the step's own recording, before its submit).
   */
  slot(meta: T): { buffer: GPUBuffer; offset: number } {
    if (this.full) throw new Error(`ReadbackRing: ${this.size} steps recorded without a drain()`);
    const offset = this.pending.length * this.perStep * 4;
    this.pending.push(meta);
    return { buffer: this.ring.buffer, offset };
  }

  /** Reads the recorded steps back (one readback), in order, and empties the ring. */
  async drain(): Promise<{ meta: T; values: Float32Array }[]> {
    if (this.pending.length === 0) return [];
    const n = this.pending.length;
    const values = new Float32Array(await this.device.read(this.ring.buffer, 0, n * this.perStep * 4));
    const metas = this.pending;
    this.pending = [];
    return metas.map((meta, i) => ({ meta, values: values.subarray(i * this.perStep, (i + 1) * this.perStep) }));
  }

  dispose(): void {
    this.ring.dispose();
  }
}
