// Dynamic loss scaling for half-precision training, as PyTorch AMP's GradScaler:
// backward starts from `scale` instead of 1 (the loss scaled, without an op) so small
// f16 gradients do not flush to zero; before the update the gradients are divided by
// it again and checked; a step whose gradients hold an inf or NaN is skipped and the
// scale halved (backoff), and after `growthInterval` clean steps in a row the scale
// doubles (growth). Defaults are PyTorch's (init 2^16, ×2, ×0.5, 2000 steps).
// With a power-of-two scale and no overflow, scaling and unscaling are exact in f32,
// so the update is the one the unscaled loss gives.
//
// Unlike PyTorch's (one .item() per step), the whole rule runs on the GPU
// (kernels/unscale.ts): the skip is a gate on the SGD kernel and the scale lives in a
// GPU buffer, so a step never waits for a readback; state() reads it when asked (the
// training loop reads it with each block's metrics, and for checkpoints).
import { SCALER_STATE_BYTES, scalerUpdate, unscaleAndCheck } from '../kernels/unscale.ts';
import type { Device } from '../gpu/device.ts';
import type { SGD } from './optim.ts';
import { type Tensor, empty, keep } from './tensor.ts';

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
  readonly device: Device;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  /** [scale, found, tracker, skipped] (kernels/unscale.ts) */
  private readonly stateBuffer: Tensor;
  /** the loss gradient backward starts from: [scale] */
  private readonly seed: Tensor;

  constructor(device: Device, o: GradScalerOptions = {}) {
    const scale = o.initScale ?? 2 ** 16;
    this.growthFactor = o.growthFactor ?? 2;
    this.backoffFactor = o.backoffFactor ?? 0.5;
    this.growthInterval = o.growthInterval ?? 2000;
    if (!(scale > 0) || !Number.isFinite(scale)) throw new Error(`GradScaler: initScale must be a positive finite number, got ${o.initScale}`);
    if (!(this.growthFactor > 1)) throw new Error(`GradScaler: growthFactor must be > 1, got ${o.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new Error(`GradScaler: backoffFactor must be in (0, 1), got ${o.backoffFactor}`);
    if (!Number.isInteger(this.growthInterval) || this.growthInterval < 1) throw new Error(`GradScaler: growthInterval must be a positive integer, got ${o.growthInterval}`);
    this.device = device;
    this.stateBuffer = keep(empty(device, [SCALER_STATE_BYTES / 4], 'f32', 'grad scaler state'));
    this.seed = keep(empty(device, [1], 'f32', 'grad scaler seed'));
    this.loadState({ scale, growthTracker: 0, skipped: 0 });
  }

  /** The GPU buffer holding the state (its `found` word gates the SGD kernel); for copies into a metrics ring. */
  get buffer(): GPUBuffer {
    return this.stateBuffer.buffer;
  }

  /** Back-propagates loss × scale (a scalar loss). */
  backward(loss: Tensor): void {
    if (loss.size !== 1 || loss.dtype !== 'f32') throw new Error(`GradScaler.backward: expects a one-element f32 loss, got ${loss.toString()}`);
    loss.backward(this.seed.reshape(loss.shape));
  }

  /**
   * Records the step: every gradient of the optimizer's parameters unscaled in place and
   * checked, the optimizer's update gated on the check, then the scale's update. No
   * readback; `beforeUpdate(buffer)` may copy the state's words (scale, found) of this
   * step before the update clears them. Gradients are left unscaled.
   */
  step(optimizer: SGD, beforeUpdate?: (state: GPUBuffer) => void): void {
    const params = optimizer.params.filter((p) => p.grad);
    if (!params.length) throw new Error('GradScaler.step: no parameter has a gradient (was backward called through the scaler?)');
    // a skipped first step leaves the velocity at zero, so the next one gives (1 − d)·g where PyTorch gives g
    if (optimizer.dampening !== 0) throw new Error(`GradScaler.step: SGD with dampening (${optimizer.dampening}) is not supported with loss scaling`);
    // two parameters may hold views of one gradient buffer (a + b of two leaves): unscale it once
    const seen = new Set<GPUBuffer>();
    for (const p of params) {
      if (seen.has(p.grad!.buffer)) continue;
      seen.add(p.grad!.buffer);
      unscaleAndCheck(this.device, p.grad!, this.buffer);
    }
    optimizer.step(this.buffer);
    beforeUpdate?.(this.buffer);
    scalerUpdate(this.device, this.buffer, this.seed, { growth: this.growthFactor, backoff: this.backoffFactor, interval: this.growthInterval });
  }

  /** The scale and counters, read back (for logs and checkpoints). */
  async state(): Promise<GradScalerState> {
    const bytes = await this.device.read(this.buffer, 0, SCALER_STATE_BYTES);
    const f = new Float32Array(bytes);
    const u = new Uint32Array(bytes);
    return { scale: f[0]!, growthTracker: u[2]!, skipped: u[3]! };
  }

  /** Restores a saved state (a resumed run) or sets the scale. */
  loadState(s: GradScalerState): void {
    if (!(s.scale > 0) || !Number.isFinite(s.scale)) throw new Error(`GradScaler.loadState: scale must be a positive finite number, got ${s.scale}`);
    for (const k of ['growthTracker', 'skipped'] as const) {
      if (!Number.isInteger(s[k]) || s[k] < 0) throw new Error(`GradScaler.loadState: ${k} must be an integer ≥ 0, got ${s[k]}`);
    }
    const words = new ArrayBuffer(SCALER_STATE_BYTES);
    new Float32Array(words)[0] = s.scale;
    new Uint32Array(words).set([0, s.growthTracker, s.skipped], 1);
    this.device.write(this.buffer, new Uint8Array(words));
    this.device.write(this.seed.buffer, Float32Array.of(s.scale));
  }

  dispose(): void {
    this.stateBuffer.dispose();
    this.seed.dispose();
  }
}
