// matmul (transposes, batched with broadcasting of a batch of 1) and linear
// (PyTorch's y = x·Wᵀ + b, bias fused into the kernel), with their backwards.
// The kernels read and write f32: an f16 operand (half-precision activations) is
// cast to f32 first, differentiably, so its gradient comes back f16; results are f32.
import { type MatmulOptions, matmulKernel } from '../../kernels/matmul.ts';
import { sumTo } from '../../kernels/reduce.ts';
import { type Tensor, empty, recordOp, shapeStr, traceOp } from '../tensor.ts';
import { cast, disposeCasts, reduceToShape } from './elementwise.ts';

export interface MatmulFlags {
  transA?: boolean;
  transB?: boolean;
}

type Dims = Pick<MatmulOptions, 'batchA' | 'batchB' | 'batch' | 'M' | 'N' | 'K'>;

function dims(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Dims {
  const bad = (why: string): Error =>
    new Error(`${op}: ${why}: A ${shapeStr(a.shape)}${transA ? 'ᵀ' : ''} · B ${shapeStr(b.shape)}${transB ? 'ᵀ' : ''}`);
  if (a.device !== b.device) throw bad('tensors live on different devices');
  if (a.rank < 2 || a.rank > 3 || b.rank < 2 || b.rank > 3) throw bad('operands must have rank 2 or 3');
  const batchA = a.rank === 3 ? a.shape[0]! : 1;
  const batchB = b.rank === 3 ? b.shape[0]! : 1;
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) throw bad(`batch sizes ${batchA} and ${batchB} do not broadcast`);
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const [M, K] = transA ? [ac, ar] : [ar, ac];
  const [K2, N] = transB ? [bc, br] : [br, bc];
  if (K !== K2) throw bad(`inner dimensions differ (${K} vs ${K2})`);
  return { batchA, batchB, batch: Math.max(batchA, batchB), M, N, K };
}

/** op(A)·op(B); rank-3 operands are batches (a batch of 1 broadcasts). f16 operands are read as f32; the result is f32. */
export function matmul(a0: Tensor, b0: Tensor, flags: MatmulFlags = {}): Tensor {
  const transA = flags.transA ?? false;
  const transB = flags.transB ?? false;
  const d = dims('matmul', a0, b0, transA, transB);
  const a = cast(a0, 'f32');
  const b = cast(b0, 'f32');
  const outShape = a.rank === 3 || b.rank === 3 ? [d.batch, d.M, d.N] : [d.M, d.N];
  const out = empty(a.device, outShape, 'f32', 'matmul');
  matmulKernel(a.device, a, b, out, { transA, transB, ...d });
  traceOp('matmul', out, [a, b], { transA, transB });
  const result = recordOp(out, [a, b], (g) => {
    // C = Â·B̂ with Â = op(A), B̂ = op(B): dÂ = dC·B̂ᵀ, dB̂ = Âᵀ·dC, transposed back where op transposed.
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (a.requiresGrad) {
      const full = transA ? matmul(b, g, { transA: transB, transB: true }) : matmul(g, b, { transB: !transB });
      da = reduceBatch(full, a);
    }
    if (b.requiresGrad) {
      const full = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
      db = reduceBatch(full, b);
    }
    return [da, db];
  });
  disposeCasts(out, [a0, b0], [a, b]);
  return result;
}

/** A gradient computed per batch, summed over the batch when the operand was broadcast. */
function reduceBatch(full: Tensor, target: Tensor): Tensor {
  if (full.size === target.size) return full.rank === target.rank ? full : full.reshape(target.shape);
  const r = reduceToShape(full, target);
  full.dispose();
  return r;
}

/**
 * PyTorch's linear: x [N, in] · weightᵀ [in, out] + bias [out]. The result is f32;
 * f16 features (a half-precision network's head) are cast to f32 first and get an f16 gradient.
 */
export function linear(x0: Tensor, weight0: Tensor, bias0?: Tensor): Tensor {
  if (x0.rank !== 2 || weight0.rank !== 2 || x0.shape[1] !== weight0.shape[1]) {
    throw new Error(`linear: input ${shapeStr(x0.shape)} does not match weight ${shapeStr(weight0.shape)} (expected input [N, ${weight0.shape[1]}])`);
  }
  if (bias0 && (bias0.rank !== 1 || bias0.shape[0] !== weight0.shape[0])) {
    throw new Error(`linear: bias ${shapeStr(bias0.shape)} does not match weight ${shapeStr(weight0.shape)} (expected [${weight0.shape[0]}])`);
  }
  const x = cast(x0, 'f32');
  const weight = cast(weight0, 'f32');
  const bias = bias0 && cast(bias0, 'f32');
  const [N, K] = x.shape as [number, number];
  const M = weight.shape[0]!;
  const out = empty(x.device, [N, M], 'f32', 'linear');
  matmulKernel(x.device, x, weight, out, { transA: false, transB: true, batchA: 1, batchB: 1, batch: 1, M: N, N: M, K, bias });
  const inputs = bias ? [x, weight, bias] : [x, weight];
  traceOp('linear', out, [x, weight, bias ?? null]);
  const result = recordOp(out, inputs, (g) => {
    const dx = x.requiresGrad ? matmul(g, weight) : null;
    const dw = weight.requiresGrad ? matmul(g, x, { transA: true }) : null;
    let db: Tensor | null = null;
    if (bias?.requiresGrad) {
      db = empty(x.device, [M], 'f32', 'linear bias grad');
      sumTo(x.device, g, db);
    }
    return [dx, dw, db];
  });
  disposeCasts(out, [x0, weight0, bias0], [x, weight, bias]);
  return result;
}
