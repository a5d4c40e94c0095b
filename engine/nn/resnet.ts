// The residual block of a CIFAR ResNet (He et al. 2016), named as torchvision's
// BasicBlock (conv1, bn1, conv2, bn2, downsample.0, downsample.1):
//
//   out = relu(bn1(conv1(x)))                 conv 3×3, stride s  (bn + relu fused)
//   out = relu(bn2(conv2(out)) + shortcut(x)) conv 3×3            (bn + add + relu fused)
//
// shortcut: identity when shape is kept; otherwise option 'B' (torchvision,
// default) a 1×1 stride-s conv + batchnorm, or option 'A' (the paper's CIFAR
// networks) x[:, :, ::s, ::s] with zero channels around it, parameter free.
import type { Device } from '../../gpu/device.ts';
import type { Tensor } from '../tensor.ts';
import { subsamplePadChannels } from '../ops/pool.ts';
import { type InitOptions, rngOf } from './init.ts';
import { BatchNorm2d, Conv2d } from './layers.ts';
import { Module, Sequential } from './module.ts';

export interface BasicBlockOptions extends InitOptions {
  stride?: number;
  /** how the shortcut changes shape when it must: 'B' projection (default) or 'A' subsample + zero channels */
  shortcut?: 'A' | 'B';
}

export class BasicBlock extends Module {
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  /** the option-B projection, when the shape changes */
  readonly downsample: Sequential | null;
  readonly stride: number;
  private readonly padShortcut: boolean;

  constructor(device: Device, readonly inPlanes: number, readonly planes: number, o: BasicBlockOptions = {}) {
    super();
    const stride = (this.stride = o.stride ?? 1);
    const init = { rng: rngOf(o) }; // one stream for the block: a seed does not repeat across its convs
    this.conv1 = this.register('conv1', new Conv2d(device, inPlanes, planes, 3, { stride, padding: 1, bias: false, ...init }));
    this.bn1 = this.register('bn1', new BatchNorm2d(device, planes));
    this.conv2 = this.register('conv2', new Conv2d(device, planes, planes, 3, { padding: 1, bias: false, ...init }));
    this.bn2 = this.register('bn2', new BatchNorm2d(device, planes));
    const reshapes = stride !== 1 || inPlanes !== planes;
    this.padShortcut = reshapes && o.shortcut === 'A';
    this.downsample =
      reshapes && !this.padShortcut
        ? this.register(
            'downsample',
            new Sequential(new Conv2d(device, inPlanes, planes, 1, { stride, bias: false, ...init }), new BatchNorm2d(device, planes)),
          )
        : null;
  }

  forward(x: Tensor): Tensor {
    const out = this.conv2.forwardForBatchNorm(this.bn1.forwardRelu(this.conv1.forwardForBatchNorm(x, this.bn1.training)), this.bn2.training);
    const identity = this.downsample
      ? this.downsample.forward(x)
      : this.padShortcut
        ? subsamplePadChannels(x, this.planes, this.stride)
        : x;
    return this.bn2.forwardAddRelu(out, identity);
  }

  protected override describe(): string {
    return `(${this.inPlanes} → ${this.planes}, stride ${this.stride}${this.padShortcut ? ', shortcut A' : ''})`;
  }
}
