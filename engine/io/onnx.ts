// ONNX export by tracing: a Module's forward pass runs once in eval mode under
// engine/tensor.ts's trace, each op it ran becomes ONNX nodes (the mapping is all
// here, one case per engine op), parameters and buffers become initializers
// under their state-dict names. Any Module exports, built-in or a user's, with
// no per-model code; an op without a mapping is refused by name. Encoded with
// onnx-proto (the ONNX schema compiled for protobufjs).
//
// Batchnorm is exported in eval form (BatchNormalization with the running
// statistics), the option-A shortcut as Slice + Pad, linear as Gemm. The batch
// dimension is symbolic ('batch'); the optional normalisation in front takes
// pixels scaled to [0, 1] (torchvision's ToTensor) and applies (x − mean)/std.
import onnxProto from 'onnx-proto';
import type { Module } from '../nn/module.ts';
import { type Tensor, type TracedOp, noGrad, shapeStr, sizeOf, trace } from '../tensor.ts';

const { onnx } = onnxProto;
type INodeProto = onnxProto.onnx.INodeProto;
type ITensorProto = onnxProto.onnx.ITensorProto;
type IAttributeProto = onnxProto.onnx.IAttributeProto;

/** The opsets the mapping is written for: the ops it emits have one signature over 13–17. */
export const ONNX_OPSETS = { min: 13, max: 17, default: 13 } as const;

export interface OnnxExportOptions {
  /** default 13 */
  opset?: number;
  /** per-channel mean and std: the graph's input becomes pixels in [0, 1], normalised inside the graph */
  normalization?: { mean: readonly number[]; std: readonly number[] } | null;
  /** graph input and output names (default 'input', 'logits') */
  inputName?: string;
  outputName?: string;
  graphName?: string;
  /** key/value metadata stored in the model (class names, the run it came from) */
  metadata?: Record<string, string>;
  producerVersion?: string;
}

/** Thrown when a traced op (or a tensor from outside the trace) has no ONNX form. */
export class OnnxExportError extends Error {}

type AttrValue = number | readonly number[] | string;
/** Attributes whose numbers are floats (the rest of the numbers are ints). */
const FLOAT_ATTRS = new Set(['epsilon', 'alpha', 'beta']);

function attribute(name: string, v: AttrValue): IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') return FLOAT_ATTRS.has(name) ? { name, type: T.FLOAT, f: v } : { name, type: T.INT, i: v };
  return { name, type: T.INTS, ints: [...v] };
}

/** Tensor creation outside any op: constants a forward pass may build (not inputs of the graph). */
const CREATION_OPS = new Set(['tensor', 'full', 'empty']);

/**
 * Traces `model.forward(sample)` in eval mode (the module's training flags are
 * restored afterwards) and returns the ONNX model's bytes. `sample` is a batch
 * of normalised images [N, C, H, W]; its batch size does not matter.
 */
export async function exportOnnx(model: Module, sample: Tensor, o: OnnxExportOptions = {}): Promise<Uint8Array> {
  const opset = o.opset ?? ONNX_OPSETS.default;
  if (!Number.isInteger(opset) || opset < ONNX_OPSETS.min || opset > ONNX_OPSETS.max) {
    throw new OnnxExportError(`ONNX export: opset ${opset} is not supported (${ONNX_OPSETS.min} to ${ONNX_OPSETS.max})`);
  }
  if (sample.rank !== 4) throw new OnnxExportError(`ONNX export: the sample input must be NCHW (rank 4), got ${shapeStr(sample.shape)}`);
  const inputName = o.inputName ?? 'input';
  const outputName = o.outputName ?? 'logits';
  const modes = model.modules().map((m) => [m, m.training] as const);
  model.eval();
  let traced: { result: Tensor; ops: TracedOp[] };
  try {
    traced = noGrad(() => trace(() => model.forward(sample)));
  } finally {
    for (const [m, t] of modes) m.training = t;
  }
  try {
    return await buildModel(model, sample, traced.result, traced.ops, { ...o, opset, inputName, outputName });
  } finally {
    const state = new Set(Object.values(model.stateDict()));
    for (const op of traced.ops) if (op.output !== sample && !state.has(op.output)) op.output.dispose();
  }
}

interface Resolved extends OnnxExportOptions {
  opset: number;
  inputName: string;
  outputName: string;
}

async function buildModel(model: Module, sample: Tensor, result: Tensor, ops: TracedOp[], o: Resolved): Promise<Uint8Array> {
  const [, channels, height, width] = sample.shape as [number, number, number, number];
  const batch = sample.shape[0]!;
  const nodes: INodeProto[] = [];
  const initializers: ITensorProto[] = [];
  const names = new Map<Tensor, string>();
  const stateNames = new Map<Tensor, string>();
  for (const [k, t] of Object.entries(model.stateDict())) stateNames.set(t, k);
  const produced = new Set(ops.map((op) => op.output));
  const used = new Set<string>();
  const unique = (base: string): string => {
    let name = base;
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
  let counter = 0;
  const node = (opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string => {
    const out = output ?? unique(`${opType.toLowerCase()}_${counter++}`);
    nodes.push({
      opType,
      name: unique(`${opType}_${nodes.length}`),
      input: inputs,
      output: [out],
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return out;
  };
  const floatInit = (base: string, dims: readonly number[], data: Float32Array): string => {
    const name = unique(base);
    initializers.push({ name, dims: [...dims], dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  };
  const int64Init = (base: string, values: readonly number[]): string => {
    const name = unique(base);
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    initializers.push({ name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  };

  // the graph's input, with the normalisation in front when it is baked in
  used.add(o.inputName);
  used.add(o.outputName);
  if (o.normalization) {
    const { mean, std } = o.normalization;
    if (mean.length !== channels || std.length !== channels) {
      throw new OnnxExportError(`ONNX export: the normalisation has ${mean.length} means and ${std.length} stds for ${channels} input channels`);
    }
    if (std.some((s) => !(s > 0))) throw new OnnxExportError(`ONNX export: normalisation std must be > 0, got [${std.join(', ')}]`);
    const centred = node('Sub', [o.inputName, floatInit('normalization.mean', [1, channels, 1, 1], Float32Array.from(mean))]);
    names.set(sample, node('Div', [centred, floatInit('normalization.std', [1, channels, 1, 1], Float32Array.from(std))]));
  } else {
    names.set(sample, o.inputName);
  }
  names.set(result, o.outputName);

  // inputs that no traced op produced: the model's state, or constants built in the forward pass
  const constants: [Tensor, string][] = [];
  const nameOf = (t: Tensor, usedBy: TracedOp): string => {
    const known = names.get(t);
    if (known !== undefined) return known;
    if (produced.has(t)) throw new OnnxExportError(`ONNX export: internal error: '${t.op}' used before it was produced`);
    const state = stateNames.get(t);
    if (state === undefined && !CREATION_OPS.has(t.op)) {
      throw new OnnxExportError(
        `ONNX export: op '${t.op}' has no ONNX mapping (its output ${shapeStr(t.shape)} feeds '${usedBy.op}' and was not recorded by the trace)`,
      );
    }
    if (t.dtype !== 'f32') throw new OnnxExportError(`ONNX export: ${state ? `'${state}'` : 'a constant'} is ${t.dtype}; only f32 tensors are exported`);
    const name = unique(state ?? `constant_${constants.length}`);
    names.set(t, name);
    constants.push([t, name]);
    return name;
  };

  for (const op of ops) {
    const ins = op.inputs.map((t) => (t ? nameOf(t, op) : ''));
    const out = names.get(op.output);
    const emitted = emit(op, ins, out, { node, floatInit, int64Init, batch });
    names.set(op.output, emitted);
  }
  if (!names.has(result) || !produced.has(result)) {
    throw new OnnxExportError(
      `ONNX export: the model's output (${result.toString()}) was not produced by a traced op${result.op ? ` (op '${result.op}' has no ONNX mapping)` : ''}`,
    );
  }
  for (const [t, name] of constants) {
    initializers.push({ name, dims: [...t.shape], dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array((await t.toArray()).buffer) });
  }

  const valueInfo = (name: string, dims: (number | string)[]): onnxProto.onnx.IValueInfoProto => ({
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
  const outDims: (number | string)[] = result.shape.map((d, i) => (i === 0 && d === batch ? 'batch' : d));
  const proto = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: o.opset }],
    producerName: 'onecycle-gpu',
    producerVersion: o.producerVersion ?? '0.1.0',
    graph: {
      name: o.graphName ?? model.constructor.name,
      node: nodes,
      initializer: initializers,
      input: [valueInfo(o.inputName, ['batch', channels, height, width])],
      output: [valueInfo(o.outputName, outDims)],
    },
    metadataProps: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(proto).finish();
}

interface Emitter {
  node: (opType: string, inputs: string[], attrs?: Record<string, AttrValue>, output?: string) => string;
  floatInit: (base: string, dims: readonly number[], data: Float32Array) => string;
  int64Init: (base: string, values: readonly number[]) => string;
  batch: number;
}

const pads = (p: readonly number[]): number[] => [p[0]!, p[1]!, p[0]!, p[1]!];
const nums = (v: unknown): readonly number[] => v as readonly number[];

/** One engine op as ONNX nodes; returns the name of the value holding its output. */
function emit(op: TracedOp, ins: string[], out: string | undefined, e: Emitter): string {
  const a = op.attrs;
  const x = op.inputs[0]!;
  switch (op.op) {
    case 'conv2d':
      return e.node('Conv', ins[2] ? ins : ins.slice(0, 2), { kernel_shape: nums(a.kernel), strides: nums(a.stride), pads: pads(nums(a.padding)) }, out);
    case 'batchNorm2d':
    case 'batchNormRelu':
    case 'batchNormAdd':
    case 'batchNormAddRelu': {
      if (a.batchStatistics) {
        throw new OnnxExportError(
          `ONNX export: '${op.op}' on ${shapeStr(x.shape)} normalises with the batch's statistics (training mode, or no running statistics); export needs eval mode with running statistics`,
        );
      }
      const C = x.shape[1]!;
      const scale = ins[1] || e.floatInit('batchnorm.ones', [C], new Float32Array(C).fill(1));
      const shift = ins[2] || e.floatInit('batchnorm.zeros', [C], new Float32Array(C));
      const last = !a.residual && !a.relu;
      let y = e.node('BatchNormalization', [ins[0]!, scale, shift, ins[3]!, ins[4]!], { epsilon: a.eps as number }, last ? out : undefined);
      if (a.residual) y = e.node('Add', [y, ins[5]!], {}, a.relu ? undefined : out);
      if (a.relu) y = e.node('Relu', [y], {}, out);
      return y;
    }
    case 'linear':
      return e.node('Gemm', ins[2] ? ins : ins.slice(0, 2), { transB: 1 }, out);
    case 'matmul': {
      const b = op.inputs[1]!;
      if (x.rank === 2 && b.rank === 2) return e.node('Gemm', ins, { transA: a.transA ? 1 : 0, transB: a.transB ? 1 : 0 }, out);
      if (a.transA || a.transB) {
        throw new OnnxExportError(`ONNX export: 'matmul' of ${shapeStr(x.shape)} and ${shapeStr(b.shape)} with transposes has no ONNX mapping (only rank-2 operands may be transposed)`);
      }
      return e.node('MatMul', ins, {}, out);
    }
    case 'add':
      return e.node('Add', ins, {}, out);
    case 'sub':
      return e.node('Sub', ins, {}, out);
    case 'mul':
      return e.node('Mul', ins, {}, out);
    case 'scale':
      return e.node('Mul', [ins[0]!, e.floatInit('scale.factor', [], Float32Array.of(a.factor as number))], {}, out);
    case 'mean':
      return e.node('ReduceMean', ins, { axes: nums(a.axes), keepdims: 1 }, out);
    case 'sum':
      return e.node('ReduceSum', [ins[0]!, e.int64Init('sum.axes', nums(a.axes))], { keepdims: 1 }, out);
    case 'relu':
      return e.node('Relu', ins, {}, out);
    case 'globalAvgPool2d':
      return e.node('GlobalAveragePool', ins, {}, out);
    case 'maxPool2d':
      return e.node('MaxPool', ins, { kernel_shape: nums(a.kernel), strides: nums(a.stride), pads: pads(nums(a.padding)) }, out);
    case 'avgPool2d':
      return e.node('AveragePool', ins, {
        kernel_shape: nums(a.kernel), strides: nums(a.stride), pads: pads(nums(a.padding)), count_include_pad: a.countIncludePad ? 1 : 0,
      }, out);
    case 'subsamplePadChannels': {
      // x[:, :, ::s, ::s], then zero channels before and after (option-A shortcut)
      const s = a.stride as number;
      const [, cin, h, w] = x.shape as [number, number, number, number];
      const sliced = e.node('Slice', [ins[0]!, e.int64Init('shortcut.starts', [0, 0]), e.int64Init('shortcut.ends', [h, w]), e.int64Init('shortcut.axes', [2, 3]), e.int64Init('shortcut.steps', [s, s])]);
      const before = a.before as number;
      const after = (a.outChannels as number) - cin - before;
      return e.node('Pad', [sliced, e.int64Init('shortcut.pads', [0, before, 0, 0, 0, after, 0, 0])], { mode: 'constant' }, out);
    }
    case 'reshape': {
      const to = op.output.shape;
      // keep the batch dimension symbolic: 0 copies it from the input
      const keepsBatch = x.shape[0] === e.batch && to[0] === e.batch;
      const shape = keepsBatch ? [0, ...to.slice(1)] : [...to];
      if (keepsBatch && to.length === 2) return e.node('Flatten', ins, { axis: 1 }, out);
      if (!keepsBatch && sizeOf(to) !== sizeOf(x.shape)) throw new OnnxExportError(`ONNX export: reshape ${shapeStr(x.shape)} → ${shapeStr(to)} is inconsistent`);
      return e.node('Reshape', [ins[0]!, e.int64Init('reshape.shape', shape)], {}, out);
    }
    default:
      throw new OnnxExportError(
        `ONNX export: op '${op.op}' (output ${shapeStr(op.output.shape)}) has no ONNX mapping; mapped ops: conv2d, batchNorm2d (and its relu/residual fusions), linear, matmul, add, sub, mul, scale, relu, mean, sum, globalAvgPool2d, maxPool2d, avgPool2d, subsamplePadChannels, reshape`,
      );
  }
}
