// Dynamic loss scaling for half-precision training, as PyTorch AMP's GradScaler:
// the loss is multiplied by `scale` before backward so small f16 gradients do not
// flush to zero; before the update the gradients are divided by it again and
// checked; a step whose gradients hold an inf or NaN is skipped and the scale
// halved (backoff), and after `growthInterval` clean steps in a row the scale
// doubles (growth). Defaults are PyTorch's (init 2^16, ×2, ×0.5, 2000 steps).
// With a power-of-two scale and no overflow, scaling and unscaling are exact in
// f32, so the update is the one the unscaled loss gives.
// The check costs one 4-byte readback per step (as GradScaler's .item()).
import { unscaleAndCheck } from '../kernels/unscale.ts';
import type { SGD } from './optim.ts';
import { type Tensor, zeros } from './tensor.ts';
import { scale as scaleOp } from './ops/elementwise.ts';

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
}

export interface GradScalerState {
  scale: number;
  /** clean steps since the last growth or backoff */
  growthTracker: number;
  /** steps skipped for non-finite gradients so far */
  skipped: number;
}

export class GradScaler {
  scale: number;
  growthTracker = 0;
  skipped = 0;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;

  constructor(o: GradScalerOptions = {}) {
    this.scale = o.initScale ?? 2 ** 16;
    this.growthFactor = o.growthFactor ?? 2;
    this.backoffFactor = o.backoffFactor ?? 0.5;
    this.growthInterval = o.growthInterval ?? 2000;
    if (!(this.scale > 0) || !Number.isFinite(this.scale)) throw new Error(`GradScaler: initScale must be a positive finite number, got ${o.initScale}`);
    if (!(this.growthFactor > 1)) throw new Error(`GradScaler: growthFactor must be > 1, got ${o.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new Error(`GradScaler: backoffFactor must be in (0, 1), got ${o.backoffFactor}`);
    if (!Number.isInteger(this.growthInterval) || this.growthInterval < 1) throw new Error(`GradScaler: growthInterval must be a positive integer, got ${o.growthInterval}`);
  }

  /** The loss to call backward on: loss × scale. */
  scaleLoss(loss: Tensor): Tensor {
    return scaleOp(loss, this.scale);
  }

  /**
   * Unscales every gradient of the optimizer's parameters in place and checks them;
   * steps the optimizer if they are all finite, else skips the step. Then updates
   * the scale. Returns whether the step was taken. Gradients are left unscaled
   * either way (the caller zeroes them as after any step).
   */
  async step(optimizer: SGD): Promise<boolean> {
    const params = optimizer.params.filter((p) => p.grad);
    if (!params.length) throw new Error('GradScaler.step: no parameter has a gradient (was backward called on the scaled loss?)');
    const device = params[0]!.device;
    const flag = zeros(device, [1]);
    try {
      for (const p of params) unscaleAndCheck(device, p.grad!, 1 / this.scale, flag.buffer);
      const found = (await flag.toArray())[0] !== 0;
      if (found) this.skipped++;
      else optimizer.step();
      this.update(found);
      return !found;
    } finally {
      flag.dispose();
    }
  }

  /** The scale after a step: backoff on an overflow, growth after growthInterval clean steps. */
  update(foundInf: boolean): void {
    if (foundInf) {
      this.scale *= this.backoffFactor;
      this.growthTracker = 0;
    } else if (++this.growthTracker === this.growthInterval) {
      this.scale *= this.growthFactor;
      this.growthTracker = 0;
    }
  }

  state(): GradScalerState {
    return { scale: this.scale, growthTracker: this.growthTracker, skipped: this.skipped };
  }
}
