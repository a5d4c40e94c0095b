// `export`: a trained checkpoint → an ONNX model (onnxruntime, TensorRT, ONNX.js,
// …) or a safetensors file (PyTorch's load_state_dict), through run/export.ts.
import { parseArgs } from 'node:util';
import { ONNX_OPSETS } from '../engine/io/onnx.ts';
import { EXPORT_FORMATS, type ExportFormat, type ExportOptions, exportCheckpoint, formatExportReport } from '../run/export.ts';

export const EXPORT_HELP = `usage: npm start -- export --checkpoint PATH --format onnx|safetensors [flags]

Exports a trained network. The model is rebuilt from the settings saved with the checkpoint (a built-in
model or your own model file) and loaded with its weights and batchnorm running statistics.
  onnx         the network traced in eval mode: batchnorm as BatchNormalization with the running
               statistics, option-A shortcuts as Slice + Pad, global average pooling, Gemm; a symbolic
               batch dimension; input 'input' [batch, C, H, W], output 'logits' [batch, classes]; the
               class names and normalisation in the model's metadata
  safetensors  the state dict under PyTorch's names (conv1.weight, layer1.0.bn1.running_mean, …)

flags:
  --checkpoint PATH             a run folder (its newest checkpoint), its checkpoints/ folder, or one
                                checkpoints/ckpt-NNNNNN folder (required)
  --format onnx|safetensors     what to write (required)
  --out FILE                    where to write it [RUN/model.onnx or RUN/model.safetensors]
  --opset N                     ONNX opset, ${ONNX_OPSETS.min} to ${ONNX_OPSETS.max} [${ONNX_OPSETS.default}]
  --bake-normalization          ONNX: the graph takes pixels / 255 in [0, 1] and normalises them itself
                                (Sub + Div per channel at the input) [off: it takes normalised input]
  --data PATH                   the dataset's folder or .tar.gz, when it moved since training [the run's]
  --quiet                       no progress lines on stderr
  --help                        this text

exit status: 0 written; 1 error (a missing or corrupt checkpoint, or an op with no ONNX form, is named).`;

const FLAGS = {
  checkpoint: { type: 'string' },
  format: { type: 'string' },
  out: { type: 'string' },
  opset: { type: 'string' },
  'bake-normalization': { type: 'boolean' },
  data: { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

/** Parses export's flags; null for --help. */
export function parseExportArgs(argv: string[]): (ExportOptions & { quiet: boolean }) | null {
  const { values, positionals } = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true });
  if (values.help) return null;
  if (positionals.length) throw new Error(`unexpected argument '${positionals[0]}' (flags start with --; the checkpoint goes after --checkpoint)`);
  if (!values.checkpoint) throw new Error('--checkpoint PATH is required (a run folder, its checkpoints/ folder or a ckpt-NNNNNN folder)');
  if (!values.format) throw new Error(`--format is required (${EXPORT_FORMATS.join(' or ')})`);
  if (!(EXPORT_FORMATS as readonly string[]).includes(values.format)) throw new Error(`--format: unknown format '${values.format}' (${EXPORT_FORMATS.join(' or ')})`);
  let opset: number | undefined;
  if (values.opset !== undefined) {
    opset = Number(values.opset);
    if (values.opset.trim() === '' || !Number.isInteger(opset) || opset < ONNX_OPSETS.min || opset > ONNX_OPSETS.max) {
      throw new Error(`--opset: expected an integer from ${ONNX_OPSETS.min} to ${ONNX_OPSETS.max}, got '${values.opset}'`);
    }
  }
  return {
    checkpoint: values.checkpoint,
    format: values.format as ExportFormat,
    out: values.out,
    opset,
    bakeNormalization: Boolean(values['bake-normalization']),
    data: values.data,
    quiet: Boolean(values.quiet),
  };
}

export async function exportCommand(argv: string[]): Promise<number> {
  const o = parseExportArgs(argv);
  if (!o) {
    process.stdout.write(`${EXPORT_HELP}\n`);
    return 0;
  }
  const report = await exportCheckpoint(o, { log: (s) => void (o.quiet || process.stderr.write(`${s}\n`)) });
  process.stdout.write(`${formatExportReport(report)}\n`);
  return 0;
}
