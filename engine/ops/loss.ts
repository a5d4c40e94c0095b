// Fused softmax cross-entropy (mean over the batch, optional label smoothing)
// with its backward, and argmax/accuracy on the GPU. The kernels read f32 logits:
// f16 logits are cast to f32 first (differentiably: their gradient comes back f16);
// the loss and accuracy are f32.
import { accuracyKernel, argmaxKernel } from '../../kernels/argmax.ts';
import { softmaxCrossEntropyBackward, softmaxCrossEntropyForward } from '../../kernels/softmaxCrossEntropy.ts';
import { type Tensor, empty, recordOp, shapeStr } from '../tensor.ts';
import { cast, disposeCasts } from './elementwise.ts';

function checkLogitsLabels(op: string, logits: Tensor, labels: Tensor): void {
  if (logits.rank !== 2) throw new Error(`${op}: logits must be [N, C], got ${shapeStr(logits.shape)}`);
  if (labels.dtype !== 'i32') throw new Error(`${op}: labels must be an i32 tensor, got ${labels.dtype}`);
  if (labels.rank !== 1 || labels.shape[0] !== logits.shape[0]) {
    throw new Error(`${op}: labels ${shapeStr(labels.shape)} do not match logits ${shapeStr(logits.shape)} (expected [${logits.shape[0]}])`);
  }
  if (logits.shape[0] === 0 || logits.shape[1] === 0) throw new Error(`${op}: empty logits ${shapeStr(logits.shape)}`);
}

export interface CrossEntropyOptions {
  /** ε in target = (1−ε)·onehot + ε/C (PyTorch's label_smoothing) */
  labelSmoothing?: number;
}

/**
 * Mean softmax cross-entropy of logits [N, C] against integer labels [N].
 * A label outside [0, C) makes the loss NaN rather than training on garbage.
 */
export function softmaxCrossEntropy(logits0: Tensor, labels: Tensor, options: CrossEntropyOptions = {}): Tensor {
  checkLogitsLabels('softmaxCrossEntropy', logits0, labels);
  const eps = options.labelSmoothing ?? 0;
  if (!(eps >= 0 && eps <= 1)) throw new Error(`softmaxCrossEntropy: labelSmoothing must be in [0, 1], got ${eps}`);
  const logits = cast(logits0, 'f32');
  const device = logits.device;
  const loss = empty(device, [], 'f32', 'softmaxCrossEntropy');
  const lse = empty(device, [logits.shape[0]!], 'f32', 'logsumexp');
  softmaxCrossEntropyForward(device, logits, labels, loss, lse, eps);
  const out = recordOp(loss, [logits], (g) => {
    const dz = empty(device, logits.shape, 'f32', 'softmaxCrossEntropy backward');
    softmaxCrossEntropyBackward(device, logits, labels, lse, g, dz, eps);
    return [dz];
  });
  if (!out.requiresGrad) lse.dispose();
  disposeCasts(out, [logits0], [logits]);
  return out;
}

/** Row-wise argmax of [N, C] as i32 [N]. */
export function argmax(x: Tensor): Tensor {
  if (x.rank !== 2) throw new Error(`argmax: expected [N, C], got ${shapeStr(x.shape)}`);
  const xf = cast(x, 'f32');
  const out = empty(x.device, [x.shape[0]!], 'i32', 'argmax');
  argmaxKernel(x.device, xf, out);
  disposeCasts(out, [x], [xf]); // no backward: out never requires grad
  return out;
}

/** Fraction of rows whose argmax equals the label, as a one-element tensor (no readback). */
export function accuracy(logits: Tensor, labels: Tensor): Tensor {
  checkLogitsLabels('accuracy', logits, labels);
  const lf = cast(logits, 'f32');
  const out = empty(logits.device, [], 'f32', 'accuracy');
  accuracyKernel(logits.device, lf, labels, out);
  disposeCasts(out, [logits], [lf]); // no backward: out never requires grad
  return out;
}
