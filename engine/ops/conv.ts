// conv2d (NCHW input, OIHW weight, optional bias; stride, zero padding) with its
// backward: the input gradient is a transposed convolution, the weight gradient
// a correlation of the input with dY, the bias gradient dY summed over N, H, W.
// All three are implicit GEMMs in kernels/conv2d.ts.
import { type ConvGeometry, conv2dForward, conv2dGradInput, conv2dGradWeight, outSize } from '../../kernels/conv2d.ts';
import { type PackedGradOutput, packGradOutput } from '../../kernels/conv2dTexture.ts';
import { type BnBackwardEpilogue, type InputPrologue, rawActivation } from '../../kernels/conv2dRows.ts';
import { bnBackwardRequestOf, leavePrepared, leaveStatistics, prologueOf, rawGradOf, requestRawGrad } from './fusion.ts';
import { type ConvPlan, planConv } from '../../kernels/convPlan.ts';
import { sumTo } from '../../kernels/reduce.ts';
import type { PooledTexture } from '../../gpu/device.ts';
import { type Shape, type Tensor, empty, isGradEnabled, recordOp, shapeStr, traceOp } from '../tensor.ts';
import { cast } from './elementwise.ts';

export interface Conv2dOptions {
  /** stride, one number for both axes or [h, w]; default 1 */
  stride?: number | readonly [number, number];
  /** zero padding on each side, one number or [h, w]; default 0 */
  padding?: number | readonly [number, number];
  /**
   * A training batchnorm takes the output next: where the planner can
   * (plan.forwardStatistics), the kernel also writes the batch statistics' partial
   * sums, which batchNorm2d of this output merges instead of reading it again.
   */
  statistics?: boolean;
}



function pair(op: string, what: string, v: number | readonly [number, number], min: number): [number, number] {
  const p: [number, number] = typeof v === 'number' ? [v, v] : [v[0], v[1]];
  for (const d of p) {
    if (!Number.isInteger(d) || d < min) throw new Error(`${op}: ${what} must be an integer ≥ ${min} (or a pair of them), got ${JSON.stringify(v)}`);
  }
  return p;
}

/** Checks shapes and options and works out the convolution's geometry; throws naming the op and shapes. */
export function convGeometry(op: string, xShape: Shape, wShape: Shape, o: Conv2dOptions): ConvGeometry {
  const [strideH, strideW] = pair(op, 'stride', o.stride ?? 1, 1);
  const [padH, padW] = pair(op, 'padding', o.padding ?? 0, 0);
  const desc = `input ${shapeStr(xShape)}, weight ${shapeStr(wShape)}, stride ${strideH}×${strideW}, padding ${padH}×${padW}`;
  if (xShape.length !== 4) throw new Error(`${op}: input must be NCHW (rank 4), got ${desc}`);
  if (wShape.length !== 4) throw new Error(`${op}: weight must be OIHW (rank 4), got ${desc}`);
  const [batch, cin, h, w] = xShape as [number, number, number, number];
  const [cout, wcin, kh, kw] = wShape as [number, number, number, number];
  if (wcin !== cin) throw new Error(`${op}: input has ${cin} channels but the weight expects ${wcin}: ${desc}`);
  if (kh < 1 || kw < 1 || cout < 1) throw new Error(`${op}: empty weight: ${desc}`);
  if (kh > h + 2 * padH || kw > w + 2 * padW) {
    throw new Error(`${op}: kernel ${kh}×${kw} is larger than the padded input ${h + 2 * padH}×${w + 2 * padW}: ${desc}`);
  }
  const ho = outSize(h, kh, strideH, padH);
  const wo = outSize(w, kw, strideW, padW);
  if (batch < 1 || cin < 1) throw new Error(`${op}: empty input: ${desc}`);
  return { batch, cin, h, w, cout, kh, kw, ho, wo, strideH, strideW, padH, padW };
}

/**
 * 2-D convolution (cross-correlation, as PyTorch): x [N, Cin, H, W], weight
 * [Cout, Cin, KH, KW], bias [Cout] → [N, Cout, Ho, Wo] with
 * Ho = ⌊(H + 2·padH − KH)/strideH⌋ + 1.
 *
 * The output has x's dtype: an f16 activation (half-precision training) gives an
 * f16 output and input gradient, computed from f16 operands (the f32 weight cast per
 * use) with f32 accumulation; the weight and bias gradients stay f32. Where the plan
 * has no f16 kernel for a part (software adapters), the convolution runs on f32
 * copies instead: the same result up to the f16 rounding of the operands.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, options: Conv2dOptions = {}): Tensor {
  const g = convGeometry('conv2d', x.shape, weight.shape, options);
  if (x.device !== weight.device || (bias && bias.device !== x.device)) throw new Error('conv2d: tensors live on different devices');
  if (bias && (bias.rank !== 1 || bias.shape[0] !== g.cout)) {
    throw new Error(`conv2d: bias ${shapeStr(bias.shape)} does not match weight ${shapeStr(weight.shape)} (expected [${g.cout}])`);
  }
  if (x.dtype === 'i32' || weight.dtype !== 'f32' || (bias && bias.dtype !== 'f32')) {
    throw new Error(`conv2d: expects an f32 or f16 input and f32 weight and bias, got ${x.dtype}, ${weight.dtype}${bias ? `, ${bias.dtype}` : ''}`);
  }
  const device = x.device;
  const half = x.dtype === 'f16';
  // which kernel runs each part, decided once here (kernels/convPlan.ts)
  const plan = planConv(device, g, half);
  if (half && !(plan.forward === 'large' && plan.gradInput === 'large' && plan.gradWeight === 'large')) {
    return cast(conv2d(cast(x, 'f32'), weight, bias, { ...options, statistics: false }), 'f16');
  }
  const out = empty(device, [g.batch, g.cout, g.ho, g.wo], x.dtype, 'conv2d');
  // the texture path's repacked kernels keep X as packed for the weight gradient,
  // released with the graph (the row kernels keep nothing: undefined)
  const keepInput = weight.requiresGrad && isGradEnabled();
  // (packed for the repacked weight gradient, or copied raw for the row one: plan.keepsRawInput)
  const partials = options.statistics && plan.forwardStatistics ? empty(device, [plan.statisticsSplits * g.cout * 3], 'f32', 'conv2d batchnorm statistics partials') : undefined;
  // x a batchnorm + relu output left unwritten (policy.fusion.bnPrologue): the forward and the weight gradient
  // read the batchnorm's input through it instead, and x is never written unless something else reads it
  const pro = plan.inputPrologue ? prologueOf(x) : undefined;
  const source = pro ? pro.source : x;
  const prologue: InputPrologue | undefined = pro ? { coef: pro.coef } : undefined;
  const packedX = conv2dForward(device, source, weight, bias ?? undefined, out, g, plan, keepInput, partials, prologue);
  if (partials) leaveStatistics(out, { partials, splits: plan.statisticsSplits });
  // the backward reads dY raw (both gradients by row kernels): the op reading out may write out's gradient that way
  // (not with a bias, whose gradient reads dY's buffer)
  if (device.policy.fusion.rawGrad && plan.sharesRawGradOutput && keepInput && x.requiresGrad && !bias && out.dtype === 'f32') requestRawGrad(out);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  traceOp('conv2d', out, [x, weight, bias ?? null], { kernel: [g.kh, g.kw], stride: [g.strideH, g.strideW], padding: [g.padH, g.padW] });
  const release = packedX ? () => device.releaseTexture(packedX) : undefined;
  return recordOp(out, inputs, (dy, into, complete) => {
    const both = x.requiresGrad && weight.requiresGrad;
    // where both gradients read dY repacked (texture path, no row kernel), it is packed once for the two;
    // where both are row kernels, copied raw once for the two
    const shared = both && plan.sharesPackedGradOutput ? packGradOutput(device, dy, g) : undefined;
    // the raw copy may be there already: the batchnorm's grad input wrote dY as one (policy.fusion.rawGrad)
    const sharesRaw = both && plan.sharesRawGradOutput;
    const handed = sharesRaw ? rawGradOf(dy) : undefined;
    if (handed && handed.texture.bytes !== g.batch * g.cout * g.ho * g.wo * 4) throw new Error(`conv2d backward: the raw dY handed over holds ${handed.texture.bytes} bytes, not dY's ${shapeStr(dy.shape)}`);
    const rawDy = handed?.texture ?? (sharesRaw ? rawActivation(device, dy, g, true) : undefined);
    // x's gradient so far (the residual's), which the grad-input kernel adds into (plan.gradInputAccumulates)
    const acc = plan.gradInputAccumulates ? into?.[0] : undefined;
    // where the grad input writes x's whole gradient (complete, and added into what came before)
    // and x is a training batchnorm's output, that batchnorm's backward sums are folded into
    // its epilogue (plan.gradInputBatchNorm)
    const whole = complete?.[0] === true && (into?.[0] === undefined || acc !== undefined);
    const req = x.requiresGrad && plan.gradInputBatchNorm && whole ? bnBackwardRequestOf(x) : undefined;
    const bnPartials = req ? empty(device, [plan.gradInputSplits * g.cin * 2], 'f32', 'conv2d grad input batchnorm partials') : undefined;
    const bn = req && bnPartials ? { ...req, partials: bnPartials, splits: plan.gradInputSplits } : undefined;
    const dx = x.requiresGrad ? gradInput(dy, weight, g, plan, shared, rawDy, acc, bn, x.dtype) : null;
    if (dx && bnPartials) leavePrepared(dx, { partials: bnPartials, splits: plan.gradInputSplits });
    const dw = weight.requiresGrad ? gradWeight(dy, source, g, plan, shared, packedX, rawDy, prologue) : null;
    if (shared) device.releaseTexture(shared.texture);
    if (handed) handed.release();
    else if (rawDy) device.releaseTexture(rawDy);
    let db: Tensor | null = null;
    if (bias?.requiresGrad) {
      const sums = empty(device, [1, g.cout, 1, 1], 'f32', 'conv2d bias grad');
      sumTo(device, dy, sums);
      db = sums.reshape([g.cout]);
      sums.dispose();
    }
    return [dx, dw, db];
  }, release);
}

function gradInput(
  dy: Tensor, weight: Tensor, g: ConvGeometry, plan: ConvPlan, shared?: PackedGradOutput, rawDy?: PooledTexture, into?: Tensor, bn?: BnBackwardEpilogue, dtype = dy.dtype,
): Tensor {
  if (into && into.size !== g.batch * g.cin * g.h * g.w) throw new Error(`conv2d backward: gradient to add into ${shapeStr(into.shape)} does not match the input [${g.batch}, ${g.cin}, ${g.h}, ${g.w}]`);
  if (dy.dtype === 'f16' && plan.gradInput !== 'large') throw new Error('conv2d grad input: f16 gradients need the large-tile kernels (conv2d runs other plans on f32 copies)');
  const dx = into ?? empty(dy.device, [g.batch, g.cin, g.h, g.w], dtype, 'conv2d grad input');
  conv2dGradInput(dy.device, dy, weight, dx, g, plan, shared, { rawDy, accumulate: !!into, bn });
  return dx;
}

function gradWeight(dy: Tensor, x: Tensor, g: ConvGeometry, plan: ConvPlan, shared?: PackedGradOutput, packedX?: PooledTexture, rawDy?: PooledTexture, prologue?: InputPrologue): Tensor {
  const device = dy.device;
  if ((dy.dtype === 'f16' || x.dtype === 'f16') && plan.gradWeight !== 'large') throw new Error('conv2d grad weight: f16 data needs the large-tile kernels (conv2d runs other plans on f32 copies)');
  const dw = empty(device, [g.cout, g.cin, g.kh, g.kw], 'f32', 'conv2d grad weight');
  const splits = plan.gradWeightSplits;
  const scratch = splits > 1 ? empty(device, [splits, dw.size], 'f32', 'conv2d grad weight partials') : undefined;
  conv2dGradWeight(device, dy, x, dw, g, plan, scratch, shared, packedX, rawDy, prologue);
  scratch?.dispose(); // back to the pool; the queue orders any reuse after this kernel
  return dw;
}

function checkGrad(op: string, dy: Tensor, g: ConvGeometry): void {
  const want = [g.batch, g.cout, g.ho, g.wo];
  if (dy.rank !== 4 || dy.shape.some((d, i) => d !== want[i])) {
    throw new Error(`${op}: gradient ${shapeStr(dy.shape)} does not match the convolution's output ${shapeStr(want)}`);
  }
}

/** The gradient of conv2d w.r.t. its input, given dY (not differentiable; for benchmarks and custom backwards). */
export function conv2dBackwardInput(dy: Tensor, weight: Tensor, inputShape: Shape, options: Conv2dOptions = {}): Tensor {
  const g = convGeometry('conv2dBackwardInput', inputShape, weight.shape, options);
  checkGrad('conv2dBackwardInput', dy, g);
  return gradInput(dy, weight, g, planConv(dy.device, g, dy.dtype === 'f16'));
}

/** The gradient of conv2d w.r.t. its weight, given dY (not differentiable; for benchmarks and custom backwards). */
export function conv2dBackwardFilter(dy: Tensor, x: Tensor, weightShape: Shape, options: Conv2dOptions = {}): Tensor {
  const g = convGeometry('conv2dBackwardFilter', x.shape, weightShape, options);
  checkGrad('conv2dBackwardFilter', dy, g);
  return gradWeight(dy, x, g, planConv(dy.device, g, x.dtype === 'f16'));
}
