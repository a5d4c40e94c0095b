// The layers a CIFAR ResNet is built from, as PyTorch's nn modules: same
// constructor arguments (after the device), same parameter and buffer names,
// same default initialisation.
import type { Device } from '../../gpu/device.ts';
import { type Tensor, empty, ones, tensor, zeros } from '../tensor.ts';
import { relu } from '../ops/elementwise.ts';
import { linear } from '../ops/matmul.ts';
import { conv2d } from '../ops/conv.ts';
import { batchNorm2d } from '../ops/batchnorm.ts';
import { avgPool2d, globalAvgPool2d, maxPool2d } from '../ops/pool.ts';
import { type InitOptions, defaultLayerInit } from './init.ts';
import { Module } from './module.ts';

type PairLike = number | readonly [number, number];
const pairOf = (v: PairLike): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

export interface Conv2dModuleOptions extends InitOptions {
  stride?: PairLike;
  padding?: PairLike;
  /** default true, as PyTorch (ResNets pass false: a batchnorm follows) */
  bias?: boolean;
}

/** nn.Conv2d: weight [out, in, kh, kw], bias [out]. */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];

  constructor(device: Device, inChannels: number, outChannels: number, kernelSize: PairLike, o: Conv2dModuleOptions = {}) {
    super();
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.kernelSize = pairOf(kernelSize);
    this.stride = pairOf(o.stride ?? 1);
    this.padding = pairOf(o.padding ?? 0);
    const [kh, kw] = this.kernelSize;
    this.weight = this.registerParameter('weight', empty(device, [outChannels, inChannels, kh, kw], 'f32', 'Conv2d.weight'));
    this.bias = this.registerParameter('bias', (o.bias ?? true) ? empty(device, [outChannels], 'f32', 'Conv2d.bias') : null);
    defaultLayerInit(this.weight, this.bias, o);
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }

  /**
   * forward() when a batchnorm takes the output next: in training the kernel may also
   * write the batch statistics the batchnorm needs (conv2d's statistics option), so it
   * does not read the output again. The same output either way.
   */
  forwardForBatchNorm(x: Tensor, bnTraining: boolean): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, statistics: bnTraining });
  }

  protected override describe(): string {
    return `(${this.inChannels}, ${this.outChannels}, kernel ${this.kernelSize.join('×')}, stride ${this.stride.join('×')}, padding ${this.padding.join('×')})`;
  }
}

export interface LinearOptions extends InitOptions {
  /** default true */
  bias?: boolean;
}

/** nn.Linear: y = x·Wᵀ + b, weight [out, in]. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(device: Device, readonly inFeatures: number, readonly outFeatures: number, o: LinearOptions = {}) {
    super();
    this.weight = this.registerParameter('weight', empty(device, [outFeatures, inFeatures], 'f32', 'Linear.weight'));
    this.bias = this.registerParameter('bias', (o.bias ?? true) ? empty(device, [outFeatures], 'f32', 'Linear.bias') : null);
    defaultLayerInit(this.weight, this.bias, o);
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias ?? undefined);
  }

  protected override describe(): string {
    return `(${this.inFeatures}, ${this.outFeatures})`;
  }
}

export interface BatchNorm2dOptions {
  /** default 1e-5 */
  eps?: number;
  /** default 0.1; null = cumulative moving average */
  momentum?: number | null;
  /** learnable γ (weight, init 1) and β (bias, init 0); default true */
  affine?: boolean;
  /** keep running_mean / running_var / num_batches_tracked; default true */
  trackRunningStats?: boolean;
}

/**
 * nn.BatchNorm2d. Training mode normalises with the batch's statistics and
 * updates the running ones on the GPU; eval mode uses the running ones.
 * forwardRelu / forwardAddRelu fuse the relu (and a residual) that follow it.
 */
export class BatchNorm2d extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  /** one-element i32 tensor (PyTorch's is int64) */
  readonly numBatchesTracked: Tensor | null;
  readonly eps: number;
  /** mutable: tuning and recipes set it after construction */
  momentum: number | null;

  constructor(device: Device, readonly numFeatures: number, o: BatchNorm2dOptions = {}) {
    super();
    this.eps = o.eps ?? 1e-5;
    this.momentum = o.momentum === undefined ? 0.1 : o.momentum;
    const affine = o.affine ?? true;
    this.weight = this.registerParameter('weight', affine ? ones(device, [numFeatures]) : null);
    this.bias = this.registerParameter('bias', affine ? zeros(device, [numFeatures]) : null);
    const track = o.trackRunningStats ?? true;
    this.runningMean = this.registerBuffer('running_mean', track ? zeros(device, [numFeatures]) : null);
    this.runningVar = this.registerBuffer('running_var', track ? ones(device, [numFeatures]) : null);
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', track ? tensor(device, [0], [], 'i32') : null);
  }

  private run(x: Tensor, relu: boolean, residual: Tensor | null): Tensor {
    return batchNorm2d(x, {
      training: this.training,
      weight: this.weight,
      bias: this.bias,
      runningMean: this.runningMean,
      runningVar: this.runningVar,
      numBatchesTracked: this.numBatchesTracked,
      momentum: this.momentum,
      eps: this.eps,
      relu,
      residual,
    });
  }

  forward(x: Tensor): Tensor {
    return this.run(x, false, null);
  }

  /** relu(bn(x)) in one pass. */
  forwardRelu(x: Tensor): Tensor {
    return this.run(x, true, null);
  }

  /** relu(bn(x) + residual) in one pass. */
  forwardAddRelu(x: Tensor, residual: Tensor): Tensor {
    return this.run(x, true, residual);
  }

  protected override describe(): string {
    return `(${this.numFeatures}, eps ${this.eps}, momentum ${this.momentum})`;
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}

/** Flattens dimensions startDim.. into one (default 1: [N, C, H, W] → [N, C·H·W]). */
export class Flatten extends Module {
  constructor(readonly startDim = 1) {
    super();
  }

  forward(x: Tensor): Tensor {
    return x.flatten(this.startDim);
  }
}

export interface PoolModuleOptions {
  /** default: the kernel size */
  stride?: PairLike;
  padding?: PairLike;
}

export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: PairLike,
    readonly options: PoolModuleOptions = {},
  ) {
    super();
  }

  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernelSize, this.options);
  }
}

export class AvgPool2d extends Module {
  constructor(
    readonly kernelSize: PairLike,
    readonly options: PoolModuleOptions & { countIncludePad?: boolean } = {},
  ) {
    super();
  }

  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.kernelSize, this.options);
  }
}

/** nn.AdaptiveAvgPool2d; only output size 1 (the global average pool of a ResNet's head). */
export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: PairLike = 1) {
    super();
    const [h, w] = pairOf(outputSize);
    if (h !== 1 || w !== 1) throw new Error(`AdaptiveAvgPool2d: only output size 1 is supported, got ${JSON.stringify(outputSize)}`);
  }

  forward(x: Tensor): Tensor {
    return globalAvgPool2d(x);
  }
}

/** Mean over H and W, [N, C, H, W] → [N, C, 1, 1]: AdaptiveAvgPool2d(1) by its usual name. */
export class GlobalAvgPool2d extends AdaptiveAvgPool2d {
  constructor() {
    super(1);
  }
}

export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}
