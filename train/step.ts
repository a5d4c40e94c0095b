// One training step, recorded and submitted without a readback: the batch's forward,
// its loss, what the caller records of it (copied into a readback ring on the GPU),
// backward, the optimizer's update, one submit. The training loop (fit.ts) and the
// GPU range test (rangetest/rangeTest.ts) both step through it.
// Half precision: the batch enters the model as f16 (every activation after it is
// f16: engine/ops), the loss comes out f32, and the loss scaler seeds backward with
// its scale and gates the update (engine/gradScaler.ts), still without a readback.
import type { Device } from '../gpu/device.ts';
import type { SGD } from '../engine/optim.ts';
import type { GradScaler } from '../engine/gradScaler.ts';
import { type Tensor, tidy } from '../engine/tensor.ts';
import { softmaxCrossEntropy } from '../engine/ops/loss.ts';
import { cast } from '../engine/ops/elementwise.ts';

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
    /** half-precision training: the loss scaler (its presence makes the activations f16) */
    scaler?: GradScaler;
    /** with a scaler: records what it needs of the scaler's state for this step (scale, found) before the scale's update */
    recordScaler?: (state: GPUBuffer) => void;
  } = {},
): void {
  const scaler = o.scaler;
  tidy(() => {
    const logits = model.forward(scaler ? cast(batch.x, 'f16') : batch.x);
    const loss = softmaxCrossEntropy(logits, batch.y, { labelSmoothing: o.labelSmoothing ?? 0 });
    o.record?.(loss, logits);
    if (scaler) scaler.backward(loss);
    else loss.backward();
  });
  batch.x.dispose();
  batch.y.dispose();
  if (scaler) scaler.step(optimizer, o.recordScaler);
  else optimizer.step();
  optimizer.zeroGrad();
  o.afterUpdate?.();
  device.flush();
}
