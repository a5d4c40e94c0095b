// A small CNN for tests and quick runs: conv-bn-relu, max pool 2, conv-bn-relu,
// global average pool, linear.
import type { Device } from '../gpu/device.ts';
import type { Tensor } from '../engine/tensor.ts';
import { BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, MaxPool2d, Module } from '../engine/nn/index.ts';
import { Rng } from '../engine/random.ts';

export interface SmallCnnOptions {
  numClasses?: number;
  inChannels?: number;
  /** channels of the first conv (the second has twice as many) */
  width?: number;
  seed?: number;
}

export class SmallCnn extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly pool: MaxPool2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly gap: GlobalAvgPool2d;
  readonly fc: Linear;

  constructor(device: Device, o: SmallCnnOptions = {}) {
    super();
    const w = o.width ?? 16;
    const rng = new Rng(o.seed ?? 0);
    this.conv1 = this.register('conv1', new Conv2d(device, o.inChannels ?? 3, w, 3, { padding: 1, bias: false, rng }));
    this.bn1 = this.register('bn1', new BatchNorm2d(device, w));
    this.pool = this.register('pool', new MaxPool2d(2));
    this.conv2 = this.register('conv2', new Conv2d(device, w, 2 * w, 3, { padding: 1, bias: false, rng }));
    this.bn2 = this.register('bn2', new BatchNorm2d(device, 2 * w));
    this.gap = this.register('gap', new GlobalAvgPool2d());
    this.fc = this.register('fc', new Linear(device, 2 * w, o.numClasses ?? 10, { rng }));
  }

  forward(x: Tensor): Tensor {
    const h = this.pool.forward(this.bn1.forwardRelu(this.conv1.forward(x)));
    const g = this.gap.forward(this.bn2.forwardRelu(this.conv2.forward(h)));
    return this.fc.forward(g.flatten(1));
  }
}
