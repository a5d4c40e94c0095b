// The fast ResNet-9 of David Page's DAWNBench entry ("How to train your ResNet"):
//   prep   conv-bn-relu 64
//   layer1 conv-bn-relu 128, max pool 2, residual(conv-bn-relu 128 ×2)
//   layer2 conv-bn-relu 256, max pool 2
//   layer3 conv-bn-relu 512, max pool 2, residual(conv-bn-relu 512 ×2)
//   max pool to 1×1, linear without bias, output × 0.125
// `width` scales every channel count (64 = the original) for small machines.
import type { Device } from '../gpu/device.ts';
import type { Tensor } from '../engine/tensor.ts';
import { BatchNorm2d, Conv2d, Linear, MaxPool2d, Module } from '../engine/nn/index.ts';
import { add, scale } from '../engine/ops/elementwise.ts';
import { maxPool2d } from '../engine/ops/pool.ts';
import { Rng } from '../engine/random.ts';

class ConvBnRelu extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  constructor(device: Device, cin: number, cout: number, rng: Rng) {
    super();
    this.conv = this.register('conv', new Conv2d(device, cin, cout, 3, { padding: 1, bias: false, rng }));
    this.bn = this.register('bn', new BatchNorm2d(device, cout));
  }
  forward(x: Tensor): Tensor {
    return this.bn.forwardRelu(this.conv.forward(x));
  }
}

class Residual extends Module {
  readonly res1: ConvBnRelu;
  readonly res2: ConvBnRelu;
  constructor(device: Device, c: number, rng: Rng) {
    super();
    this.res1 = this.register('res1', new ConvBnRelu(device, c, c, rng));
    this.res2 = this.register('res2', new ConvBnRelu(device, c, c, rng));
  }
  forward(x: Tensor): Tensor {
    return add(x, this.res2.forward(this.res1.forward(x)));
  }
}

export interface ResNet9Options {
  numClasses?: number;
  inChannels?: number;
  /** channels of the prep layer (64 in the original) */
  width?: number;
  seed?: number;
}

export class ResNet9 extends Module {
  readonly prep: ConvBnRelu;
  readonly layer1: ConvBnRelu;
  readonly res1: Residual;
  readonly layer2: ConvBnRelu;
  readonly layer3: ConvBnRelu;
  readonly res3: Residual;
  readonly pool: MaxPool2d;
  readonly fc: Linear;

  constructor(device: Device, o: ResNet9Options = {}) {
    super();
    const w = o.width ?? 64;
    const rng = new Rng(o.seed ?? 0);
    this.prep = this.register('prep', new ConvBnRelu(device, o.inChannels ?? 3, w, rng));
    this.layer1 = this.register('layer1', new ConvBnRelu(device, w, 2 * w, rng));
    this.res1 = this.register('res1', new Residual(device, 2 * w, rng));
    this.layer2 = this.register('layer2', new ConvBnRelu(device, 2 * w, 4 * w, rng));
    this.layer3 = this.register('layer3', new ConvBnRelu(device, 4 * w, 8 * w, rng));
    this.res3 = this.register('res3', new Residual(device, 8 * w, rng));
    this.pool = this.register('pool', new MaxPool2d(2));
    this.fc = this.register('fc', new Linear(device, 8 * w, o.numClasses ?? 10, { bias: false, rng }));
  }

  forward(x: Tensor): Tensor {
    let h = this.prep.forward(x);
    h = this.res1.forward(this.pool.forward(this.layer1.forward(h)));
    h = this.pool.forward(this.layer2.forward(h));
    h = this.res3.forward(this.pool.forward(this.layer3.forward(h)));
    // max pool over what is left (4×4 for 32×32 inputs) to 1×1
    const pooled = maxPool2d(h, [h.shape[2]!, h.shape[3]!]);
    return scale(this.fc.forward(pooled.flatten(1)), 0.125);
  }
}
