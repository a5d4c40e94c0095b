// A convolutional net without batchnorm (conv-relu ×3 with max pools, global average pool,
// linear): the kind of network whose usable learning rate is far from a batchnorm ResNet's,
// used as a setting of the LR choice's ground truth (experiments/lr-ground-truth). Train it with
//
//   npm start -- train --model ./examples/plain-cnn.ts --dataset synthetic --epochs 2 --max-lr 0.05 --out runs/plain
import { type Device, type Rng, type Tensor, defineModel, nn, relu } from 'onecycle-gpu';

export class PlainCnn extends nn.Module {
  readonly conv1: nn.Conv2d;
  readonly conv2: nn.Conv2d;
  readonly conv3: nn.Conv2d;
  readonly pool: nn.MaxPool2d;
  readonly gap: nn.GlobalAvgPool2d;
  readonly classifier: nn.Linear;
  constructor(device: Device, channels: number, classes: number, rng: Rng, width = 16) {
    super();
    this.conv1 = this.register('conv1', new nn.Conv2d(device, channels, width, 3, { padding: 1, rng }));
    this.conv2 = this.register('conv2', new nn.Conv2d(device, width, 2 * width, 3, { padding: 1, rng }));
    this.conv3 = this.register('conv3', new nn.Conv2d(device, 2 * width, 4 * width, 3, { padding: 1, rng }));
    this.pool = this.register('pool', new nn.MaxPool2d(2));
    this.gap = this.register('gap', new nn.GlobalAvgPool2d());
    this.classifier = this.register('classifier', new nn.Linear(device, 4 * width, classes, { rng }));
  }
  forward(x: Tensor): Tensor {
    const a = this.pool.forward(relu(this.conv1.forward(x)));
    const b = this.pool.forward(relu(this.conv2.forward(a)));
    const c = relu(this.conv3.forward(b));
    return this.classifier.forward(this.gap.forward(c).flatten(1));
  }
}

export default defineModel(({ device, channels, classes, imageSize, rng }) => {
  if (imageSize < 4) throw new Error(`plain-cnn pools twice by 2: images of at least 4×4 pixels, got ${imageSize}`);
  return new PlainCnn(device, channels, classes, rng);
});
