// What the bench measures: every case once on the engine and, where TF.js has
// the same operation, once on TensorFlow.js's WebGPU backend (the peer). Shapes:
// square matmuls, the classifier of a CIFAR ResNet, every distinct conv layer of
// ResNet-20/56 on CIFAR (He et al. 2016: 16/32/64 channels at 32²/16²/8², stride-2
// transitions, and the 1×1 projection shortcut some variants use), batchnorm(+relu)
// on the three activation sizes, elementwise ops, and the fused SGD update.
//
// Layouts: the engine is NCHW/OIHW; TF.js runs NHWC/HWIO, its native (fastest)
// layout. FLOPs count a multiply-add as 2; `bytes` is the nominal traffic of the
// operation (each input read once, each output written once), not what a given
// implementation happens to move, so GB/s figures compare across implementations.
import type { Device } from '../gpu/device.ts';
import {
  type Tensor, batchNormRelu, conv2d, conv2dBackwardFilter, conv2dBackwardInput, add, matmul, noGrad, randn, relu, zeros,
} from '../engine/index.ts';
import { chooseConfig, configName } from '../kernels/matmul.ts';
import { sgdUpdate } from '../kernels/sgd.ts';
import type { EngineWork } from './timing.ts';
import type { Tensor4D } from '@tensorflow/tfjs-core';
import type { Tf, TfTensor } from './tfjs.ts';

export interface OursCase extends EngineWork {
  dispose: () => void;
}

export interface PeerCase {
  run: () => TfTensor | TfTensor[];
  dispose: () => void;
}

export interface BenchCase {
  /** stable key, used to match cases across result files */
  id: string;
  group: string;
  label: string;
  /** floating-point operations per repetition (multiply-add = 2) */
  flops?: number;
  /** nominal bytes moved per repetition */
  bytes?: number;
  ours?: (device: Device) => OursCase;
  peer?: (tf: Tf) => PeerCase;
  /** skip the peer under --quick (it would take too long) */
  peerFullOnly?: boolean;
  /** which of our kernels runs (asked when the case runs, after any tuning) */
  detail?: () => string;
}

const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** An engine case whose repetition is one op call returning a tensor (disposed at once). */
function oursOp(inputs: () => Tensor[], op: (t: Tensor[]) => Tensor): (device: Device) => OursCase {
  return () => {
    const t = inputs();
    return {
      record: () => noGrad(() => op(t)).dispose(),
      dispose: () => t.forEach((x) => x.dispose()),
    };
  };
}

function peerOp(tf: Tf, shapes: number[][], op: (t: TfTensor[]) => TfTensor | TfTensor[]): PeerCase {
  const t = shapes.map((s) => tf.randomNormal(s));
  return { run: () => op(t), dispose: () => t.forEach((x) => x.dispose()) };
}

// ------------------------------------------------------------------ matmul

export function matmulCases(quick: boolean, device: Device): BenchCase[] {
  const cases: BenchCase[] = [];
  const square = quick ? [256, 512, 1024] : [256, 512, 1024, 2048];
  const shapes: { M: number; N: number; K: number; transA?: boolean; transB?: boolean; what: string }[] = square.map((n) => ({
    M: n, N: n, K: n, what: `${n}³`,
  }));
  // the classifier of a CIFAR ResNet: 64 features → 10 classes at batch 128
  shapes.push(
    { M: 128, N: 10, K: 64, transB: true, what: 'classifier fwd x·Wᵀ 128×64·(10×64)ᵀ' },
    { M: 128, N: 64, K: 10, what: 'classifier dX g·W 128×10·10×64' },
    { M: 10, N: 64, K: 128, transA: true, what: 'classifier dW gᵀ·x (128×10)ᵀ·128×64' },
  );
  for (const s of shapes) {
    const aShape = s.transA ? [s.K, s.M] : [s.M, s.K];
    const bShape = s.transB ? [s.N, s.K] : [s.K, s.N];
    const flags = { transA: !!s.transA, transB: !!s.transB };
    cases.push({
      id: `matmul/${s.M}x${s.N}x${s.K}${s.transA ? '/tA' : ''}${s.transB ? '/tB' : ''}`,
      group: 'matmul',
      label: `matmul ${s.what}`,
      flops: 2 * s.M * s.N * s.K,
      bytes: 4 * (s.M * s.K + s.K * s.N + s.M * s.N),
      ours: oursOp(() => [randn(device, aShape, { seed: 1 }), randn(device, bShape, { seed: 2 })], ([a, b]) => matmul(a!, b!, flags)),
      peer: (tf) => peerOp(tf, [aShape, bShape], ([a, b]) => tf.matMul(a!, b!, flags.transA, flags.transB)),
      peerFullOnly: s.M >= 2048,
      detail: () => configName(chooseConfig(device, { ...s, ...flags, batchA: 1, batchB: 1, batch: 1 })),
    });
  }
  return cases;
}

// ------------------------------------------------------------------ conv2d

export interface ConvShape {
  cin: number;
  cout: number;
  /** input height = width */
  size: number;
  k: number;
  stride: number;
  pad: number;
  what: string;
}

/** Every distinct conv layer of a CIFAR ResNet-20/56 (same shapes, different counts). */
export const RESNET_CONVS: ConvShape[] = [
  { cin: 3, cout: 16, size: 32, k: 3, stride: 1, pad: 1, what: 'stem 3→16 @32' },
  { cin: 16, cout: 16, size: 32, k: 3, stride: 1, pad: 1, what: 'stage1 16→16 @32' },
  { cin: 16, cout: 32, size: 32, k: 3, stride: 2, pad: 1, what: 'stage2 in 16→32 s2 @32' },
  { cin: 32, cout: 32, size: 16, k: 3, stride: 1, pad: 1, what: 'stage2 32→32 @16' },
  { cin: 32, cout: 64, size: 16, k: 3, stride: 2, pad: 1, what: 'stage3 in 32→64 s2 @16' },
  { cin: 64, cout: 64, size: 8, k: 3, stride: 1, pad: 1, what: 'stage3 64→64 @8' },
  { cin: 16, cout: 32, size: 32, k: 1, stride: 2, pad: 0, what: 'shortcut 1×1 16→32 s2' },
  { cin: 32, cout: 64, size: 16, k: 1, stride: 2, pad: 0, what: 'shortcut 1×1 32→64 s2' },
];

const QUICK_CONVS = new Set([1, 2, 5]);

export function convCases(quick: boolean, device: Device): BenchCase[] {
  const cases: BenchCase[] = [];
  const batches = quick ? [32] : [32, 128];
  for (const batch of batches) {
    RESNET_CONVS.forEach((c, i) => {
      if (quick && !QUICK_CONVS.has(i)) return;
      const out = Math.floor((c.size + 2 * c.pad - c.k) / c.stride) + 1;
      const xShape = [batch, c.cin, c.size, c.size];
      const wShape = [c.cout, c.cin, c.k, c.k];
      const yShape = [batch, c.cout, out, out];
      const opts = { stride: c.stride, padding: c.pad };
      const flops = 2 * batch * c.cout * out * out * c.cin * c.k * c.k;
      const x = 4 * prod(xShape);
      const w = 4 * prod(wShape);
      const y = 4 * prod(yShape);
      // TF.js: NHWC activations, HWIO filters
      const xT = [batch, c.size, c.size, c.cin];
      const wT = [c.k, c.k, c.cin, c.cout];
      const yT = [batch, out, out, c.cout];
      const attrs = { strides: [c.stride, c.stride], pad: c.pad, dataFormat: 'NHWC' }; // dimRoundingMode left unset
      const base = `conv/${c.cin}-${c.cout}-${c.size}-k${c.k}s${c.stride}/b${batch}`;
      const name = `${c.what} b${batch}`;
      cases.push(
        {
          id: `${base}/fwd`, group: 'conv2d', label: `conv fwd ${name}`, flops, bytes: x + w + y,
          ours: oursOp(() => [randn(device, xShape, { seed: 1 }), randn(device, wShape, { seed: 2 })], ([xt, wt]) => conv2d(xt!, wt!, null, opts)),
          peer: (tf) => peerOp(tf, [xT, wT], ([xt, wt]) => tf.conv2d(xt as Tensor4D, wt as Tensor4D, c.stride, c.pad)),
        },
        {
          id: `${base}/dx`, group: 'conv2d', label: `conv dX  ${name}`, flops, bytes: y + w + x,
          ours: oursOp(() => [randn(device, yShape, { seed: 3 }), randn(device, wShape, { seed: 2 })], ([dy, wt]) => conv2dBackwardInput(dy!, wt!, xShape, opts)),
          peer: (tf) => peerOp(tf, [yT, wT], ([dy, wt]) =>
            tf.engine().runKernel('Conv2DBackpropInput', { dy: dy!, filter: wt! }, { ...attrs, inputShape: xT }) as TfTensor),
        },
        {
          id: `${base}/dw`, group: 'conv2d', label: `conv dW  ${name}`, flops, bytes: y + x + w,
          ours: oursOp(() => [randn(device, yShape, { seed: 3 }), randn(device, xShape, { seed: 1 })], ([dy, xt]) => conv2dBackwardFilter(dy!, xt!, wShape, opts)),
          peer: (tf) => peerOp(tf, [xT, yT], ([xt, dy]) =>
            tf.engine().runKernel('Conv2DBackpropFilter', { x: xt!, dy: dy! }, { ...attrs, filterShape: wT }) as TfTensor),
        },
      );
    });
  }
  return cases;
}

// ------------------------------------------------------- batchnorm, elementwise

const ACTIVATIONS: { c: number; size: number }[] = [
  { c: 16, size: 32 },
  { c: 32, size: 16 },
  { c: 64, size: 8 },
];

export function memoryCases(quick: boolean, device: Device): BenchCase[] {
  const cases: BenchCase[] = [];
  const batch = 128;
  const acts = quick ? ACTIVATIONS.slice(0, 1) : ACTIVATIONS;
  for (const a of acts) {
    const shape = [batch, a.c, a.size, a.size];
    const shapeT = [batch, a.size, a.size, a.c];
    const n = prod(shape);
    const tag = `${batch}×${a.c}×${a.size}²`;
    const params = (): Tensor[] => [randn(device, shape, { seed: 1 }), randn(device, [a.c], { seed: 2 }), randn(device, [a.c], { seed: 3 })];
    cases.push({
      id: `bn/relu-fwd/${a.c}x${a.size}/b${batch}`, group: 'batchnorm', label: `batchnorm+relu fwd ${tag}`,
      bytes: 4 * 3 * n, // statistics read x, normalisation reads x and writes y
      ours: oursOp(params, ([x, g, b]) => batchNormRelu(x!, { training: true, weight: g, bias: b })),
      peer: (tf) => peerOp(tf, [shapeT, [a.c], [a.c]], ([x, g, b]) =>
        tf.tidy(() => {
          const m = tf.moments(x!, [0, 1, 2]);
          return tf.relu(tf.batchNorm(x!, m.mean, m.variance, b!, g!, 1e-5));
        })),
    });
    cases.push({
      id: `bn/relu-fwdbwd/${a.c}x${a.size}/b${batch}`, group: 'batchnorm', label: `batchnorm+relu fwd+bwd ${tag}`,
      bytes: 4 * 8 * n, // forward 3n; backward reads x, dy, y twice-ish and writes dx: nominal 5n
      ours: (dev) => {
        const [x, g, b] = params();
        const dy = randn(dev, shape, { seed: 4 });
        x!.requireGrad();
        g!.requireGrad();
        b!.requireGrad();
        return {
          record: () => {
            const y = batchNormRelu(x!, { training: true, weight: g, bias: b });
            const grads = y.backwardFn!(dy);
            for (const t of grads) t?.dispose();
            y.dispose();
          },
          dispose: () => [x, g, b, dy].forEach((t) => t!.dispose()),
        };
      },
      peer: (tf) => {
        const [x, g, b, dy] = [shapeT, [a.c], [a.c], shapeT].map((s) => tf.randomNormal(s));
        const f = (xx: TfTensor, gg: TfTensor, bb: TfTensor): TfTensor => {
          const m = tf.moments(xx, [0, 1, 2]);
          return tf.relu(tf.batchNorm(xx, m.mean, m.variance, bb, gg, 1e-5));
        };
        const grads = tf.grads((xx: TfTensor, gg: TfTensor, bb: TfTensor) => f(xx, gg, bb));
        return { run: () => grads([x!, g!, b!], dy), dispose: () => [x, g, b, dy].forEach((t) => t!.dispose()) };
      },
    });
    cases.push({
      id: `ew/add/${a.c}x${a.size}/b${batch}`, group: 'elementwise', label: `add ${tag}`, bytes: 4 * 3 * n,
      ours: oursOp(() => [randn(device, shape, { seed: 1 }), randn(device, shape, { seed: 2 })], ([x, y]) => add(x!, y!)),
      peer: (tf) => peerOp(tf, [shapeT, shapeT], ([x, y]) => tf.add(x!, y!)),
    });
    cases.push({
      id: `ew/relu/${a.c}x${a.size}/b${batch}`, group: 'elementwise', label: `relu ${tag}`, bytes: 4 * 2 * n,
      ours: oursOp(() => [randn(device, shape, { seed: 1 })], ([x]) => relu(x!)),
      peer: (tf) => peerOp(tf, [shapeT], ([x]) => tf.relu(x!)),
    });
  }
  return cases;
}

// ------------------------------------------------------------ optimizer

/**
 * Parameter counts of CIFAR ResNet-20 and ResNet-56 with option-A shortcuts (He
 * et al.): 3×3 convs without bias, batchnorm γ and β, the 64→10 classifier with bias.
 */
export const RESNET_PARAMS = { 20: 269_722, 56: 853_018 } as const;

export function optimizerCases(quick: boolean, device: Device): BenchCase[] {
  const sizes = quick ? [['ResNet-20', RESNET_PARAMS[20]]] as const : [['ResNet-20', RESNET_PARAMS[20]], ['ResNet-56', RESNET_PARAMS[56]]] as const;
  return sizes.map(([what, n]) => ({
    id: `sgd/momentum/${n}`,
    group: 'optimizer',
    label: `SGD momentum update, ${what} (${(n / 1e3).toFixed(0)}k params, one tensor)`,
    bytes: 4 * 5 * n, // read w, g, v; write w, v
    ours: () => {
      const w = randn(device, [n], { seed: 1 });
      const g = randn(device, [n], { seed: 2 });
      const v = zeros(device, [n]);
      const p = { lr: 0.1, momentum: 0.9, dampening: 0, nesterov: false, decoupled: false, form: 'pytorch' as const };
      return { record: () => sgdUpdate(device, [{ w, g, v, weightDecay: 5e-4, first: false }], p), dispose: () => [w, g, v].forEach((t) => t.dispose()) };
    },
    peer: (tf) => {
      const w = tf.variable(tf.randomNormal([n]));
      const g = tf.randomNormal([n]);
      // TF.js's momentum optimizer; weight decay added to the gradient as PyTorch does
      const opt = tf.train.momentum(0.1, 0.9);
      return {
        run: () => {
          tf.tidy(() => opt.applyGradients({ [w.name]: tf.add(g, tf.mul(w, 5e-4)) }));
          return [];
        },
        dispose: () => {
          opt.dispose();
          w.dispose();
          g.dispose();
        },
      };
    },
  }));
}
