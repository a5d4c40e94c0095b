// Elementwise ops with their backwards: add/sub/mul (NumPy broadcasting, as a
// bias or a residual needs), multiply by a scalar, relu.
import { binary, unary } from '../../kernels/elementwise.ts';
import { broadcastShapes } from '../../kernels/common.ts';
import { sumTo } from '../../kernels/reduce.ts';
import { type Tensor, empty, recordOp, shapeStr, traceOp } from '../tensor.ts';

function checkSameDevice(op: string, a: Tensor, b: Tensor): void {
  if (a.device !== b.device) throw new Error(`${op}: tensors live on different devices`);
}

function broadcastOrThrow(op: string, a: Tensor, b: Tensor): number[] {
  checkSameDevice(op, a, b);
  const shape = broadcastShapes(a.shape, b.shape);
  if (!shape) throw new Error(`${op}: shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} do not broadcast`);
  return shape;
}

/** The gradient of a broadcast input: g summed over the dimensions it was broadcast along. */
export function reduceToShape(g: Tensor, target: Tensor): Tensor {
  if (g.size === target.size) return g.reshape(target.shape);
  const out = empty(g.device, target.shape, 'f32', 'sumTo');
  sumTo(g.device, g, out);
  return out;
}

function binaryOp(op: 'add' | 'sub' | 'mul', a: Tensor, b: Tensor): Tensor {
  const shape = broadcastOrThrow(op, a, b);
  const out = empty(a.device, shape, 'f32', op);
  binary(a.device, op, a, b, out);
  return recordOp(out, [a, b], (g) => {
    switch (op) {
      case 'add':
        return [a.requiresGrad ? reduceToShape(g, a) : null, b.requiresGrad ? reduceToShape(g, b) : null];
      case 'sub':
        return [a.requiresGrad ? reduceToShape(g, a) : null, b.requiresGrad ? reduceToShape(scale(g, -1), b) : null];
      case 'mul':
        return [a.requiresGrad ? reduceToShape(mul(g, b), a) : null, b.requiresGrad ? reduceToShape(mul(g, a), b) : null];
    }
  });
}

/** a + b with broadcasting. */
export const add = (a: Tensor, b: Tensor): Tensor => binaryOp('add', a, b);
/** a − b with broadcasting. */
export const sub = (a: Tensor, b: Tensor): Tensor => binaryOp('sub', a, b);
/** a · b elementwise with broadcasting. */
export const mul = (a: Tensor, b: Tensor): Tensor => binaryOp('mul', a, b);

/** s · x for a number s. */
export function scale(x: Tensor, s: number): Tensor {
  if (!Number.isFinite(s)) throw new Error(`scale: factor must be finite, got ${s}`);
  const out = empty(x.device, x.shape, 'f32', 'scale');
  unary(x.device, 'scale', x, out, s);
  traceOp('scale', out, [x], { factor: s });
  return recordOp(out, [x], (g) => [scale(g, s)]);
}

export function relu(x: Tensor): Tensor {
  const out = empty(x.device, x.shape, 'f32', 'relu');
  unary(x.device, 'relu', x, out);
  return recordOp(out, [x], (g) => {
    const dx = empty(x.device, x.shape, 'f32', 'relu backward');
    binary(x.device, 'reluGrad', x, g, dx);
    return [dx];
  });
}
