// An example of your own model file: a tiny VGG-style network (two stages of
// conv-bn-relu ×2 and a 2×2 max pool, global average pool, linear), written
// against the package's public API only. Train it with
//
//   npm start -- train --model ./examples/tiny-vgg.ts --dataset synthetic --epochs 2 --out runs/vgg
//
// The default export receives the data's shape, the device and a seeded
// generator; everything it returns must be an nn.Module. Parameter names
// (features.0.conv.weight, …, classifier.weight) are what checkpoints and the
// ONNX export use.
import { type Device, type Rng, type Tensor, defineModel, nn } from 'onecycle-gpu';

class ConvBnRelu extends nn.Module {
  readonly conv: nn.Conv2d;
  readonly bn: nn.BatchNorm2d;
  constructor(device: Device, cin: number, cout: number, rng: Rng) {
    super();
    this.conv = this.register('conv', new nn.Conv2d(device, cin, cout, 3, { padding: 1, bias: false, rng }));
    this.bn = this.register('bn', new nn.BatchNorm2d(device, cout));
  }
  forward(x: Tensor): Tensor {
    return this.bn.forwardRelu(this.conv.forward(x));
  }
}

export class TinyVgg extends nn.Module {
  readonly features: nn.Sequential;
  readonly pool: nn.GlobalAvgPool2d;
  readonly classifier: nn.Linear;
  constructor(device: Device, channels: number, classes: number, rng: Rng, width = 8) {
    super();
    this.features = this.register(
      'features',
      new nn.Sequential(
        new ConvBnRelu(device, channels, width, rng),
        new ConvBnRelu(device, width, width, rng),
        new nn.MaxPool2d(2),
        new ConvBnRelu(device, width, 2 * width, rng),
        new ConvBnRelu(device, 2 * width, 2 * width, rng),
        new nn.MaxPool2d(2),
      ),
    );
    this.pool = this.register('pool', new nn.GlobalAvgPool2d());
    this.classifier = this.register('classifier', new nn.Linear(device, 2 * width, classes, { rng }));
  }
  forward(x: Tensor): Tensor {
    return this.classifier.forward(this.pool.forward(this.features.forward(x)).flatten(1));
  }
}

export default defineModel(({ device, channels, classes, imageSize, rng }) => {
  if (imageSize < 4) throw new Error(`tiny-vgg pools twice by 2: images of at least 4×4 pixels, got ${imageSize}`);
  return new TinyVgg(device, channels, classes, rng);
});
