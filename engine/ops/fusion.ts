// What one op leaves for the next across an op boundary when a fusion (policy.fusion,
// issue 20) lets a kernel do part of another op's work, keyed by the tensor between
// them: data handed over once, never a switch (which kernel runs is the planners').
//   statistics   a conv's output → the batchnorm that normalises it: the batch
//                statistics' partials the conv's epilogue wrote (conv2d's statistics)
//   bnBackward   a batchnorm's output → the conv that reads it: what the conv's grad
//                input needs to fold the batchnorm's backward sums into its epilogue
//   prepared     that conv's grad input → the batchnorm's backward: dY already masked
//                by the relu, and the partial sums
//   prologue     a batchnorm + relu's output, left unwritten (Tensor.deferWrite) → the
//                convs that read it: the batchnorm's input and coefficients, which they
//                load through the batchnorm and relu (kernels/conv2dRows.ts InputPrologue)
//   rawGrad      a conv's output → the batchnorm that reads it: the conv's backward reads
//                its dY as a raw texture; then that batchnorm's grad input (the conv's
//                dY) → the conv: the raw texture it wrote in place of the buffer, which
//                is left unwritten (Tensor.deferWrite) unless something else reads it
import type { Tensor } from '../tensor.ts';
import type { PooledTexture } from '../../gpu/device.ts';

export interface Partials {
  partials: Tensor;
  /** partials per channel */
  splits: number;
}

/** A batchnorm's backward as a conv grad-input epilogue needs it (kernels/conv2dRows.ts BnBackwardEpilogue, less the partials). */
export interface BnBackwardRequest {
  mask: 'none' | 'input' | 'output';
  x: Tensor;
  stats: Tensor;
  gamma?: Tensor | undefined;
  beta?: Tensor | undefined;
  y?: Tensor | undefined;
}

/** What a conv needs to read a deferred batchnorm + relu output through its prologue. */
export interface BnPrologue {
  /** the batchnorm's input, which the conv reads in place of its output */
  source: Tensor;
  /** per channel vec4(mean, k, shift, 0), from the batchnorm's statistics merge (kernels/batchnorm.ts BnCoefficients) */
  coef: Tensor;
}

const statistics = new WeakMap<Tensor, Partials>();
const prologues = new WeakMap<Tensor, BnPrologue>();
const bnBackward = new WeakMap<Tensor, BnBackwardRequest>();
const prepared = new WeakMap<Tensor, Partials>();

function take<T>(map: WeakMap<Tensor, T>, t: Tensor): T | undefined {
  const v = map.get(t);
  if (v) map.delete(t);
  return v;
}

/** The conv that produced `t` wrote its batch statistics' partials. */
export const leaveStatistics = (t: Tensor, p: Partials): void => void statistics.set(t, p);
/** The statistics partials written beside `t`, handed over once (the caller disposes them). */
export const takeStatistics = (t: Tensor): Partials | undefined => take(statistics, t);

/** The batchnorm that produced `t` (training statistics) lets the conv reading `t` fold its backward sums in. */
export const requestBnBackward = (t: Tensor, r: BnBackwardRequest): void => void bnBackward.set(t, r);
/** What the batchnorm that produced `t` asks of the conv grad input that completes t's gradient (not removed: read once per backward). */
export const bnBackwardRequestOf = (t: Tensor): BnBackwardRequest | undefined => bnBackward.get(t);

/** `grad` (a batchnorm output's gradient) is already masked, with its backward partial sums. */
export const leavePrepared = (grad: Tensor, p: Partials): void => void prepared.set(grad, p);
/** The partial sums of a gradient a conv's epilogue prepared, handed over once (the caller disposes them). */
export const takePrepared = (grad: Tensor): Partials | undefined => take(prepared, grad);

/** `t` is a batchnorm + relu output left unwritten: convs may read it through this prologue. */
export const leavePrologue = (t: Tensor, p: BnPrologue): void => void prologues.set(t, p);
/**
 * The prologue to read `t` through while its data is still unwritten (then for every conv that reads it) and
 * the graph that made it is alive (the batchnorm's backward disposes the coefficients), else undefined: the
 * conv then reads t, which writes it.
 */
export function prologueOf(t: Tensor): BnPrologue | undefined {
  const p = t.writeDeferred && !t.isDisposed ? prologues.get(t) : undefined;
  return p && !p.coef.isDisposed && !p.source.isDisposed ? p : undefined;
}

/**
 * A raw texture (kernels/rawTexture.ts) held by a deferred gradient and by the kernels recording reads of it:
 * back to the pool when the last holder lets go, so a write of the gradient's buffer that runs meanwhile
 * (and drops the gradient's hold) cannot hand it to another op before the readers are recorded.
 */
export class SharedTexture {
  private holders = 1;
  constructor(
    readonly texture: PooledTexture,
    private readonly free: (t: PooledTexture) => void,
  ) {}
  retain(): this {
    this.holders++;
    return this;
  }
  release(): void {
    if (--this.holders === 0) this.free(this.texture);
  }
}

const rawGradWanted = new WeakSet<Tensor>();
const rawGrads = new WeakMap<Tensor, SharedTexture>();

/** The conv that produced `t` reads t's gradient as a raw texture in its backward (ConvPlan.sharesRawGradOutput). */
export const requestRawGrad = (t: Tensor): void => void rawGradWanted.add(t);
/** Whether the op reading `t` may hand t's gradient over as a raw texture (leaveRawGrad). */
export const rawGradRequested = (t: Tensor): boolean => rawGradWanted.has(t);
/** `grad` is left unwritten (deferWrite): its values are in this raw texture. */
export const leaveRawGrad = (grad: Tensor, raw: SharedTexture): void => void rawGrads.set(grad, raw);
/** The raw texture holding `grad` while its buffer is still unwritten, retained for the caller (who releases it), else undefined. */
export function rawGradOf(grad: Tensor): SharedTexture | undefined {
  const r = grad.writeDeferred && !grad.isDisposed ? rawGrads.get(grad) : undefined;
  return r?.retain();
}
