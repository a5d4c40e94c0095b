// One training step, recorded and submitted without a readback: the batch's forward,
// its loss, what the caller records of it (copied into a readback ring on the GPU),
// backward, the optimizer's update, one submit. The training loop (fit.ts) and the
// GPU range test (rangetest/rangeTest.ts) both step through it.
import type { Device } from '../gpu/device.ts';
import type { SGD } from '../engine/optim.ts';
import { type Tensor, tidy } from '../engine/tensor.ts';
import { softmaxCrossEntropy } from '../engine/ops/loss.ts';

export interface StepModel {
  forward(x: Tensor): Tensor;
}

export function trainStep(
  device: Device,
  model: StepModel,
  optimizer: SGD,
  batch: { x: Tensor; y: Tensor },
  o: {
    labelSmoothing?: number;
    /** records what it needs of the step (the loss, the logits) before backward; inside the step's scope */
    record?: (loss: Tensor, logits: Tensor) => void;
    /** runs after the update, before the submit (the range test's held-out loss) */
    afterUpdate?: () => void;
  } = {},
): void {
  tidy(() => {
    const logits = model.forward(batch.x);
    const loss = softmaxCrossEntropy(logits, batch.y, { labelSmoothing: o.labelSmoothing ?? 0 });
    o.record?.(loss, logits);
    loss.backward();
  });
  batch.x.dispose();
  batch.y.dispose();
  optimizer.step();
  optimizer.zeroGrad();
  o.afterUpdate?.();
  device.flush();
}
