// batchNorm2d over NCHW with PyTorch's semantics (training: batch mean and biased
// variance, running statistics updated on the GPU with the unbiased variance;
// eval: running statistics), with two fusions for ResNet blocks:
//   batchNormRelu(x)           = relu(bn(x))
//   batchNormAddRelu(x, r)     = relu(bn(x) + r)
// one elementwise dispatch each instead of three, and one backward that masks
// the gradient by the output's sign and hands the residual its gradient.
//
// Half precision: x (and the residual) may be f16; y and dx have x's dtype, the
// residual's gradient the residual's; the statistics, γ, β, the running statistics
// and dγ, dβ are f32, as is all the arithmetic (kernels/batchnorm.ts). The fusions
// with a convolution (its epilogue writing the statistics, or folding this backward
// into its grad input) are the f32 row kernels': an f16 x takes neither. The relu's
// backward masks by an f16 y as stored (read back), not by the mask recomputed from x
// (policy.fusion.reluMask), which would pass where a tiny positive value rounded to 0.
import {
  type BnFusion,
  type BnGeometry,
  batchStats,
  batchStatsFromPartials,
  batchStatsPartials,
  bnApply,
  bnApplyCoefficients,
  bnGradInput,
  bnGradPartials,
  bnGradSums,
  bnGradSumsFromPartials,
  bnSplits,
  planBatchNorm,
  runningStats,
} from '../../kernels/batchnorm.ts';
import { acquireRaw, copyRawToBuffer } from '../../kernels/rawTexture.ts';
import { SharedTexture, leavePrologue, leaveRawGrad, rawGradRequested, requestBnBackward, takePrepared, takeStatistics } from './fusion.ts';
import { convPrologues } from '../../kernels/convPlan.ts';
import { cast } from './elementwise.ts';
import { type Tensor, empty, isGradEnabled, recordOp, shapeStr, traceOp } from '../tensor.ts';
import type { Device } from '../../gpu/device.ts';

export interface BatchNormOptions {
  /** true: normalise with the batch's statistics and update the running ones; false: use the running ones */
  training: boolean;
  /** γ [C] and β [C] (both or neither; neither = affine false) */
  weight?: Tensor | null | undefined;
  bias?: Tensor | null | undefined;
  /** running statistics [C], updated in place in training mode; without them eval mode uses batch statistics (track_running_stats=False) */
  runningMean?: Tensor | null | undefined;
  runningVar?: Tensor | null | undefined;
  /** one-element i32 or f32 counter, incremented each training step (needed when momentum is null) */
  numBatchesTracked?: Tensor | null | undefined;
  /** running = (1 − momentum)·running + momentum·batch; null = cumulative average. Default 0.1. */
  momentum?: number | null;
  /** default 1e-5 */
  eps?: number;
  /** fused relu after the (normalised + residual) value */
  relu?: boolean;
  /** fused residual, added before the relu; same shape as x */
  residual?: Tensor | null | undefined;
}

function check(op: string, x: Tensor, o: BatchNormOptions): BnGeometry {
  const bad = (why: string): Error => new Error(`${op}: ${why} (input ${shapeStr(x.shape)})`);
  if (x.rank !== 4) throw bad('input must be NCHW (rank 4)');
  if (x.dtype === 'i32') throw bad('input must be f32 or f16, got i32');
  const [batch, channels, h, w] = x.shape as [number, number, number, number];
  const perChannel = (name: string, t: Tensor | null | undefined): void => {
    if (!t) return;
    if (t.device !== x.device) throw bad(`${name} lives on another device`);
    if (t.rank !== 1 || t.shape[0] !== channels) throw bad(`${name} ${shapeStr(t.shape)} does not match ${channels} channels (expected [${channels}])`);
    // parameters and statistics stay f32 in half-precision training (the kernels bind them as f32)
    if (t.dtype !== 'f32') throw bad(`${name} must be f32, got ${t.dtype}`);
  };
  perChannel('weight', o.weight);
  perChannel('bias', o.bias);
  perChannel('runningMean', o.runningMean);
  perChannel('runningVar', o.runningVar);
  if (!o.weight !== !o.bias) throw bad('weight and bias must be given together (affine) or not at all');
  if (!o.runningMean !== !o.runningVar) throw bad('runningMean and runningVar must be given together');
  if (o.numBatchesTracked && o.numBatchesTracked.size !== 1) {
    throw bad(`numBatchesTracked must have one element, got ${shapeStr(o.numBatchesTracked.shape)}`);
  }
  if (o.residual) {
    if (o.residual.device !== x.device) throw bad('residual lives on another device');
    if (o.residual.dtype === 'i32') throw bad('residual must be f32 or f16, got i32');
    if (o.residual.shape.length !== 4 || o.residual.shape.some((d, i) => d !== x.shape[i])) {
      throw bad(`residual ${shapeStr(o.residual.shape)} does not match the input`);
    }
  }
  const eps = o.eps ?? 1e-5;
  if (!(eps > 0) || !Number.isFinite(eps)) throw bad(`eps must be a positive number, got ${eps}`);
  const m = o.momentum === undefined ? 0.1 : o.momentum;
  if (m !== null && !(m >= 0 && m <= 1)) throw bad(`momentum must be in [0, 1] or null, got ${m}`);
  if (m === null && o.training && o.runningMean && !o.numBatchesTracked) {
    throw bad('momentum null (cumulative average) needs numBatchesTracked');
  }
  if (o.training && batch * h * w <= 1) {
    throw bad(`expected more than 1 value per channel when training, got ${batch * h * w}`);
  }
  return { batch, channels, plane: h * w };
}

/**
 * Batch normalisation of x [N, C, H, W] per channel, optionally followed by
 * + residual and relu (fused). Differentiable w.r.t. x, weight, bias and residual.
 */
export function batchNorm2d(x: Tensor, o: BatchNormOptions): Tensor {
  const op = o.relu ? (o.residual ? 'batchNormAddRelu' : 'batchNormRelu') : o.residual ? 'batchNormAdd' : 'batchNorm2d';
  const g = check(op, x, o);
  const device = x.device;
  const eps = o.eps ?? 1e-5;
  const momentum = o.momentum === undefined ? 0.1 : o.momentum;
  const weight = o.weight ?? undefined;
  const bias = o.bias ?? undefined;
  const residual = o.residual ?? undefined;
  const f: BnFusion = { affine: !!weight, relu: !!o.relu, residual: !!residual };
  const useBatchStats = o.training || !o.runningMean;
  const C = g.channels;
  const { splits } = bnSplits(g);

  const stats = empty(device, [2 * C], 'f32', `${op} statistics`);
  // partials the convolution that produced x wrote beside it (conv2d's statistics option), taken either way;
  // only an f32 x is used with them: they are sums of the conv's f32 values, not of x as stored
  const conv = takeStatistics(x);
  const fromConv = x.dtype === 'f32' ? conv : undefined;
  const y = empty(device, x.shape, x.dtype, op);
  // policy.fusion.bnPrologue: a training batchnorm + relu (f32, no residual, on the graph) computes its statistics
  // and per-channel coefficients only and leaves y unwritten: the 3×3 row convs that read y load x through the
  // coefficients (leavePrologue below), and anything else that reads y, at any time, has it written then
  // (Tensor.deferWrite) from x and the coefficients, kept for it. The backward needs x, not y (its relu mask is
  // recomputed from x: policy.fusion.reluMask).
  const onGraph = isGradEnabled() && (x.requiresGrad || !!weight?.requiresGrad || !!bias?.requiresGrad);
  const deferred = o.training && f.relu && !residual && x.dtype === 'f32' && onGraph && device.policy.fusion.reluMask && convPrologues(device);
  // the prologue's per-channel coefficients, written by the statistics merge (disposed with the graph, as stats)
  const coef = deferred ? empty(device, [4 * C], 'f32', `${op} prologue coefficients`) : undefined;
  if (useBatchStats) {
    const running =
      o.training && o.runningMean && o.runningVar
        ? { runningMean: o.runningMean, runningVar: o.runningVar, numBatchesTracked: o.numBatchesTracked ?? undefined }
        : undefined;
    // the partials: from the conv's epilogue, or a reduction pass here
    const scratch = fromConv ? undefined : empty(device, [splits * C * 3], 'f32', `${op} partial statistics`);
    // merged by the normalise itself (policy.fusion.bnMerge), except for the cumulative average (momentum null),
    // whose factor reads num_batches_tracked as the merge increments it, and a deferred y, which no normalise writes now
    if (!coef && device.policy.fusion.bnMerge && (momentum !== null || !running)) {
      const partials = fromConv ? fromConv.partials : scratch!;
      const n = fromConv ? fromConv.splits : batchStatsPartials(device, x, g, partials);
      bnApply(device, x, stats, y, g, f, weight, bias, residual, { partials, splits: n, eps, momentum: momentum ?? 0, running });
    } else {
      // a deferred y's coefficients are written by the merge beside the statistics
      const coefs = coef ? { coef, gamma: weight, beta: bias } : undefined;
      if (fromConv) batchStatsFromPartials(device, fromConv.partials, fromConv.splits, g, stats, eps, momentum, running, coefs);
      else batchStats(device, x, g, stats, scratch!, eps, momentum, running, coefs);
      if (coef) deferApply(y, x, coef, g);
      else bnApply(device, x, stats, y, g, f, weight, bias, residual);
    }
    scratch?.dispose();
  } else {
    runningStats(device, o.runningMean!, o.runningVar!, stats, eps);
    bnApply(device, x, stats, y, g, f, weight, bias, residual);
  }
  conv?.partials.dispose();

  traceOp(op, y, [x, weight ?? null, bias ?? null, o.runningMean ?? null, o.runningVar ?? null, residual ?? null], {
    batchStatistics: useBatchStats, eps, relu: f.relu, residual: f.residual,
  });
  const inputs: Tensor[] = [x];
  if (weight && bias) inputs.push(weight, bias);
  if (residual) inputs.push(residual);
  const out = recordOp(y, inputs, (dy, into, complete) => {
    // dY masked by the relu and its partial sums, from the epilogue of the conv grad input that completed it
    // (requested below for an f32 x only; ignoring one is safe: masking a masked dY again changes nothing)
    const handed = takePrepared(dy);
    const prepared = x.dtype === 'f32' ? handed : undefined;
    const needX = x.requiresGrad;
    const needParams = !!weight && (weight.requiresGrad || bias!.requiresGrad);
    const needRes = !!residual?.requiresGrad;
    // a relu without a residual: its mask recomputed from x as bnApply computed y (same bits), not read from y;
    // an f32 y only: an f16 y is 0 where a tiny positive value rounded to 0, which the recomputed v > 0 would pass
    // (always for a deferred y, which may never have been written)
    const maskFromX = f.relu && !residual && (deferred || (device.policy.fusion.reluMask && y.dtype === 'f32'));
    // a prepared dY is masked already: the relu is done
    const fb: BnFusion = prepared ? { ...f, relu: false } : f;
    const writeRes = needRes && fb.relu;
    const runGradInput = needX || writeRes;
    let sums: Tensor | undefined;
    let dgamma: Tensor | undefined;
    let dbeta: Tensor | undefined;
    let merge: { partials: Tensor; splits: number; dgamma?: Tensor | undefined; dbeta?: Tensor | undefined } | undefined;
    let scratch: Tensor | undefined;
    if (needParams || (needX && useBatchStats)) {
      if (needParams) {
        dgamma = empty(device, [C], 'f32', `${op} grad weight`);
        dbeta = empty(device, [C], 'f32', `${op} grad bias`);
      }
      // the partials: from the conv grad input's epilogue, or a reduction pass here
      if (!prepared) scratch = empty(device, [splits * C * 2], 'f32', `${op} backward partial sums`);
      const maskArgs = maskFromX ? { gamma: weight, beta: bias } : undefined;
      if (device.policy.fusion.bnMerge && useBatchStats && runGradInput) {
        // merged by the grad input (policy.fusion.bnMerge), which also stores dγ, dβ
        const partials = prepared ? prepared.partials : scratch!;
        const n = prepared ? prepared.splits : bnGradPartials(device, x, dy, stats, g, f.relu, y, partials, maskArgs);
        merge = { partials, splits: n, dgamma, dbeta };
      } else {
        sums = empty(device, [2 * C], 'f32', `${op} backward sums`);
        if (prepared) bnGradSumsFromPartials(device, prepared.partials, prepared.splits, g, sums, dgamma, dbeta);
        else bnGradSums(device, x, dy, stats, g, f.relu, y, scratch!, sums, dgamma, dbeta, maskArgs);
      }
    }
    let dx: Tensor | null = null;
    let dres: Tensor | null = null;
    // without a relu the residual's gradient is dy itself (in the residual's dtype); with one, the kernel writes the masked dy
    if (needRes && !fb.relu) dres = cast(dy.reshape(x.shape), residual.dtype === 'f16' ? 'f16' : 'f32');
    if (runGradInput) {
      dx = empty(device, x.shape, x.dtype, `${op} grad input`);
      if (writeRes) dres = empty(device, x.shape, residual!.dtype, `${op} grad residual`);
      // policy.fusion.rawGrad: the conv that made x reads its dY as a raw texture, and this dx is the whole of
      // it (no other gradient of x before or after): written there directly, and into dx's buffer only if
      // something else reads it (deferRawWrite)
      const whole = complete?.[0] === true && into?.[0] === undefined;
      const raw = needX && whole && x.dtype === 'f32' && dy.dtype === 'f32' && device.policy.fusion.rawGrad && rawGradRequested(x) && planBatchNorm(device, g).rawGradInput
        ? rawTexture(device, g)
        : undefined;
      try {
        bnGradInput(device, x, dy, stats, g, { ...fb, residual: writeRes }, useBatchStats, raw ? { raw: raw.texture } : dx, {
          sums, merge, gamma: weight, y, dres: dres ?? undefined, maskBeta: bias, maskFromInput: maskFromX && fb.relu,
        });
      } catch (e) {
        raw?.release();
        throw e;
      }
      if (raw) deferRawWrite(dx, raw, g);
      if (!needX) {
        dx.dispose();
        dx = null;
      }
    }
    scratch?.dispose();
    handed?.partials.dispose();
    sums?.dispose();
    stats.dispose(); // the graph is released after its one backward
    coef?.dispose();
    const grads: (Tensor | null)[] = [dx];
    if (weight) grads.push(dgamma ?? null, dbeta ?? null);
    if (residual) grads.push(dres);
    return grads;
  });
  if (!out.requiresGrad) stats.dispose();
  // training statistics: the conv that reads the output may fold this backward's sums into its grad input
  // (mask: the relu recomputed from x as above, or read from y where a residual was added);
  // not for an f16 x: that epilogue (kernels/conv2dRows.ts) reads x, y and writes dY as f32
  else {
    if (coef) leavePrologue(out, { source: x, coef });
    if (useBatchStats && device.policy.fusion.bnBackward && x.dtype === 'f32') {
      const mask = !f.relu ? 'none' : residual ? 'output' : device.policy.fusion.reluMask ? 'input' : 'output';
      requestBnBackward(out, { mask, x, stats, gamma: weight, beta: bias, y: mask === 'output' ? y : undefined });
    }
  }
  return out;
}

/**
 * y written when first read, from x and the coefficients (a snapshot of the statistics, γ and β), both kept
 * until then. At module level so that the closures share no scope with batchNorm2d's, whose backward holds
 * y: y's storage (the finalizer's held value) must not reach y.
 */
function deferApply(y: Tensor, x: Tensor, coef: Tensor, g: BnGeometry): void {
  const device = x.device;
  const keptX = x.keepAlive();
  const keptCoef = coef.keepAlive();
  const { shape, size, dtype } = keptX.operand;
  y.deferWrite(
    (buffer) => bnApplyCoefficients(device, keptX.operand, keptCoef.operand, { buffer, shape, size, dtype }, g),
    () => {
      keptX.release();
      keptCoef.release();
    },
  );
}

/** A pooled raw texture for a gradient of geometry g, shared by count. At module level for deferApply's reason (the release closure). */
function rawTexture(device: Device, g: BnGeometry): SharedTexture {
  return new SharedTexture(acquireRaw(device, g.channels * g.plane, g.batch), (t) => device.releaseTexture(t));
}

/** dx left unwritten with its values in `raw` (policy.fusion.rawGrad): written from it when first read. At module level for deferApply's reason. */
function deferRawWrite(dx: Tensor, raw: SharedTexture, g: BnGeometry): void {
  const device = dx.device;
  dx.deferWrite(
    (buffer) => copyRawToBuffer(device, raw.texture, buffer, g.channels * g.plane, g.batch),
    () => raw.release(),
  );
  leaveRawGrad(dx, raw);
}

/** relu(batchNorm2d(x)) in one elementwise pass. */
export function batchNormRelu(x: Tensor, o: Omit<BatchNormOptions, 'relu' | 'residual'>): Tensor {
  return batchNorm2d(x, { ...o, relu: true });
}

/** relu(batchNorm2d(x) + residual) in one elementwise pass: the tail of a ResNet basic block. */
export function batchNormAddRelu(x: Tensor, residual: Tensor, o: Omit<BatchNormOptions, 'relu' | 'residual'>): Tensor {
  return batchNorm2d(x, { ...o, residual, relu: true });
}
