// Reverse-mode autograd over the tape that ops record (Tensor.parents/backwardFn):
// topological order, then each node's backward in reverse. Leaves accumulate
// into `.grad` (PyTorch semantics: grads add up until zeroGrad); intermediate
// gradients are freed as soon as their node has consumed them; the graph is
// released afterwards, as PyTorch does without retain_graph.
import { axpyInPlace, binary, unary } from '../kernels/elementwise.ts';
import { Tensor, empty, full, keep, noGrad, shapeStr } from './tensor.ts';

function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.parents.length) {
      top[1]++;
      const p = node.parents[i]!;
      if (p.requiresGrad && !visited.has(p)) {
        visited.add(p);
        stack.push([p, 0]);
      }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order; // parents before children
}

function copyOf(t: Tensor): Tensor {
  const out = empty(t.device, t.shape, t.dtype, 'grad');
  unary(t.device, 'copy', t, out);
  return out;
}

export function backward(root: Tensor, gradOutput?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error(`backward: ${root.toString()} does not require grad (no input of the graph has requiresGrad)`);
  }
  if (gradOutput === undefined && root.size !== 1) {
    throw new Error(`backward: output has shape ${shapeStr(root.shape)}; pass a gradient of that shape for a non-scalar output`);
  }
  if (gradOutput && gradOutput.size !== root.size) {
    throw new Error(`backward: gradient shape ${shapeStr(gradOutput.shape)} does not match output shape ${shapeStr(root.shape)}`);
  }
  const device = root.device;
  noGrad(() => {
    const order = topoOrder(root);
    const grads = new Map<Tensor, Tensor>();
    // how many map entries (or leaf .grad fields) hold each gradient tensor
    const holders = new Map<Tensor, number>();
    const hold = (g: Tensor): void => void holders.set(g, (holders.get(g) ?? 0) + 1);
    const drop = (g: Tensor): void => {
      const n = (holders.get(g) ?? 0) - 1;
      holders.set(g, n);
      if (n <= 0 && g !== gradOutput) g.dispose();
    };
    // backwards still to add into each tensor's gradient: a backward that sees 1 is the last
    const pending = new Map<Tensor, number>();
    for (const node of order) if (node.backwardFn) for (const p of node.parents) if (p.requiresGrad) pending.set(p, (pending.get(p) ?? 0) + 1);
    const seed = gradOutput ?? full(device, root.shape, 1, root.dtype === 'f16' ? 'f16' : 'f32');
    grads.set(root, seed);
    hold(seed);
    if (gradOutput) hold(gradOutput); // never disposed: the caller owns it

    for (let k = order.length - 1; k >= 0; k--) {
      const node = order[k]!;
      const g = grads.get(node);
      if (!g) continue;
      grads.delete(node);
      if (!node.backwardFn) {
        // a leaf
        if (node.grad) {
          axpyInPlace(device, node.grad, g);
        } else {
          node.grad = keep((holders.get(g) ?? 0) > 1 || g === gradOutput ? copyOf(g) : g.reshape(node.shape));
        }
        drop(g);
        continue;
      }
      // gradients so far that this node's backward may add into instead of autograd adding
      // afterwards: held here alone, in a buffer of their own (policy.fusion.addInto)
      const into = device.policy.fusion.addInto
        ? node.parents.map((p) => {
            const prev = grads.get(p);
            return prev && prev !== gradOutput && holders.get(prev) === 1 && prev.ownsStorage ? prev : undefined;
          })
        : undefined;
      // input i's gradient is complete with this backward's: none adds to it later, none earlier unless into[i] holds it
      const complete = node.parents.map((p, i) => pending.get(p) === 1 && (!grads.has(p) || into?.[i] !== undefined));
      for (const p of node.parents) if (p.requiresGrad) pending.set(p, pending.get(p)! - 1);
      const inputGrads = node.backwardFn(g, into, complete);
      node.parents.forEach((p, i) => {
        const gi = inputGrads[i];
        if (!gi || !p.requiresGrad) {
          if (gi && gi !== g) drop(gi);
          return;
        }
        if (gi.size !== p.size) {
          throw new Error(`backward of '${node.op}': gradient ${shapeStr(gi.shape)} for input ${shapeStr(p.shape)}`);
        }
        // a gradient has its tensor's dtype (PyTorch's rule): an op's backward that missed it is a bug
        if (gi.dtype !== p.dtype) throw new Error(`backward of '${node.op}': ${gi.dtype} gradient for a ${p.dtype} input ${shapeStr(p.shape)}`);
        hold(gi);
        const prev = grads.get(p);
        if (!prev) {
          grads.set(p, gi);
        } else if (gi === prev) {
          drop(gi); // the backward added into it: still held once, by the map
        } else {
          const sum = empty(device, p.shape, p.dtype, 'grad');
          binary(device, 'add', prev, gi, sum);
          hold(sum);
          grads.set(p, sum);
          drop(prev);
          drop(gi);
        }
      });
      drop(g);
    }
    // release the graph: saved tensors of the closures become unreachable
    for (const node of order) node.releaseGraphNode();
  });
}

/** Sets the gradients of `params` to null (PyTorch's zero_grad(set_to_none=True)). */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
