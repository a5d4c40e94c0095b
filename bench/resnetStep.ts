// The training step the benches time, profile and measure: a CIFAR ResNet (option A) on
// random images, forward, backward and an SGD-momentum update, recorded and flushed.
import type { Device } from '../gpu/device.ts';
import { SGD } from '../engine/optim.ts';
import { softmaxCrossEntropy } from '../engine/ops/loss.ts';
import { randn, tensor, tidy } from '../engine/tensor.ts';
import { resnet } from '../models/resnet.ts';

export interface ResnetStep {
  /** records one training step and flushes it */
  step: () => void;
  /** frees the model, its optimizer state and the batch */
  dispose: () => void;
}

export function resnetStep(device: Device, depth: number, batch: number, seed?: number): ResnetStep {
  const model = resnet(device, { depth, numClasses: 10, shortcut: 'A', ...(seed === undefined ? {} : { seed }) });
  model.train(true);
  const opt = new SGD({ params: model.parameters(), lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });
  const x = randn(device, [batch, 3, 32, 32], { seed: 1 });
  const labels = tensor(device, Array.from({ length: batch }, (_, i) => i % 10), [batch], 'i32');
  return {
    step: () => {
      tidy(() => softmaxCrossEntropy(model.forward(x), labels).backward());
      opt.step();
      opt.zeroGrad();
      device.flush();
    },
    dispose: () => {
      x.dispose();
      labels.dispose();
      model.dispose();
    },
  };
}
