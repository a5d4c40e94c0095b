// The training step the benches time, profile and measure: a CIFAR ResNet (option A) on
// random images, one step of train/step.ts (forward, backward and an SGD-momentum update,
// recorded and flushed), in half precision as `train --precision f16` steps it.
import type { Device } from '../gpu/device.ts';
import { SGD } from '../engine/optim.ts';
import { GradScaler } from '../engine/gradScaler.ts';
import { softmaxCrossEntropy } from '../engine/ops/loss.ts';
import { cast } from '../engine/ops/elementwise.ts';
import { type Tensor, randn, tensor } from '../engine/tensor.ts';
import { resnet } from '../models/resnet.ts';
import { trainStep } from '../train/step.ts';

export interface ResnetStep {
  /** records one training step and flushes it */
  step: () => void;
  /** the step's forward and loss alone (for per-phase timings) */
  forward: () => Tensor;
  optimizer: SGD;
  /** frees the model, its optimizer state, the scaler and the batch */
  dispose: () => void;
}

export function resnetStep(device: Device, depth: number, batch: number, o: { seed?: number; precision?: 'f32' | 'f16' } = {}): ResnetStep {
  const model = resnet(device, { depth, numClasses: 10, shortcut: 'A', ...(o.seed === undefined ? {} : { seed: o.seed }) });
  model.train(true);
  const optimizer = new SGD({ params: model.parameters(), lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });
  const x = randn(device, [batch, 3, 32, 32], { seed: 1 });
  const labels = tensor(device, Array.from({ length: batch }, (_, i) => i % 10), [batch], 'i32');
  const scaler = o.precision === 'f16' ? new GradScaler(device) : null;
  const forward = (): Tensor => softmaxCrossEntropy(model.forward(scaler ? cast(x, 'f16') : x), labels);
  return {
    // the same batch every step: trainStep disposes the views it is given, not x and the labels
    step: () => trainStep(device, model, optimizer, { x: x.reshape(x.shape), y: labels.reshape(labels.shape) }, scaler ? { scaler } : {}),
    forward,
    optimizer,
    dispose: () => {
      x.dispose();
      labels.dispose();
      scaler?.dispose();
      optimizer.dispose();
      model.dispose();
    },
  };
}
