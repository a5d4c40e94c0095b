// ResNets for CIFAR as in He et al. 2016, "Deep Residual Learning for Image
// Recognition", §4.2: depth 6n+2 (20, 32, 44, 56, 110), a 3×3 conv to 16
// channels, three stages of n basic blocks at 16/32/64 channels (stride 2 at the
// start of stages 2 and 3), global average pooling, a linear classifier.
// Shortcuts: option A (the paper's CIFAR nets: subsample + zero channels,
// parameter free) or option B (1×1 projection, as torchvision). Parameter
// counts with option A: ResNet-20 0.27 M, -56 0.85 M, -110 1.7 M (the paper's).
//
// Names follow torchvision (conv1, bn1, layer1.0.conv1, …, fc), so the
// safetensors of a checkpoint load into the equivalent PyTorch model.
import type { Device } from '../gpu/device.ts';
import type { Tensor } from '../engine/tensor.ts';
import { BasicBlock, BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, Module, Sequential } from '../engine/nn/index.ts';
import { kaimingNormal_ } from '../engine/nn/init.ts';
import { Rng } from '../engine/random.ts';

export interface CifarResNetOptions {
  depth: number;
  numClasses?: number;
  /** input channels (3) */
  inChannels?: number;
  /** 'A' (default, the paper's) or 'B' */
  shortcut?: 'A' | 'B';
  /** channels of the first stage (16); the stages use ×1, ×2, ×4 */
  width?: number;
  seed?: number;
}

export class CifarResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly pool: GlobalAvgPool2d;
  readonly fc: Linear;

  constructor(device: Device, readonly options: CifarResNetOptions) {
    super();
    const { depth } = options;
    if (!Number.isInteger(depth) || depth < 8 || (depth - 2) % 6 !== 0) {
      throw new Error(`resnet: depth must be 6n+2 with n ≥ 1 (8, 20, 32, 44, 56, 110), got ${depth}`);
    }
    const n = (depth - 2) / 6;
    const w = options.width ?? 16;
    const rng = new Rng(options.seed ?? 0);
    const shortcut = options.shortcut ?? 'A';
    this.conv1 = this.register('conv1', new Conv2d(device, options.inChannels ?? 3, w, 3, { padding: 1, bias: false, rng }));
    this.bn1 = this.register('bn1', new BatchNorm2d(device, w));
    const stage = (inPlanes: number, planes: number, stride: number): Sequential =>
      new Sequential(
        ...Array.from({ length: n }, (_, i) =>
          new BasicBlock(device, i === 0 ? inPlanes : planes, planes, { stride: i === 0 ? stride : 1, shortcut, rng }),
        ),
      );
    this.layer1 = this.register('layer1', stage(w, w, 1));
    this.layer2 = this.register('layer2', stage(w, 2 * w, 2));
    this.layer3 = this.register('layer3', stage(2 * w, 4 * w, 2));
    this.pool = this.register('avgpool', new GlobalAvgPool2d());
    this.fc = this.register('fc', new Linear(device, 4 * w, options.numClasses ?? 10, { rng }));
    // He et al.'s initialisation (as torchvision's ResNet): normal, fan_out, for every convolution
    for (const m of this.modules()) if (m instanceof Conv2d) kaimingNormal_(m.weight, { mode: 'fan_out', nonlinearity: 'relu', rng });
  }

  forward(x: Tensor): Tensor {
    let h = this.bn1.forwardRelu(this.conv1.forwardForBatchNorm(x, this.bn1.training));
    h = this.layer3.forward(this.layer2.forward(this.layer1.forward(h)));
    return this.fc.forward(this.pool.forward(h).flatten(1));
  }

  protected override describe(): string {
    return `(depth ${this.options.depth}, shortcut ${this.options.shortcut ?? 'A'})`;
  }
}

export function resnet(device: Device, options: CifarResNetOptions): CifarResNet {
  return new CifarResNet(device, options);
}
