// Exports a trained checkpoint (the export command) as ONNX (traced in eval
// mode, engine/io/onnx.ts) or safetensors (the state dict under PyTorch's names,
// with the classes and normalisation as metadata). The model is rebuilt and
// loaded exactly as eval does (run/trained.ts), so a checkpoint that eval
// refuses is refused here too.
import { basename, join } from 'node:path';
import { type Device, createDevice } from '../gpu/device.ts';
import { writeFileAtomic } from '../engine/io/atomic.ts';
import { withPathAsync } from '../engine/io/fsErrors.ts';
import { ONNX_OPSETS, exportOnnx } from '../engine/io/onnx.ts';
import { writeSafetensors } from '../engine/io/safetensors.ts';
import { zeros } from '../engine/tensor.ts';
import { parameterCount } from '../models/index.ts';
import { validateConfig } from './config.ts';
import { stateTensors } from './session.ts';
import { openTrainedCheckpoint, restoreTrainedModel, trainedData } from './trained.ts';

export const EXPORT_FORMATS = ['onnx', 'safetensors'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  /** a run folder (its newest checkpoint), its checkpoints/ folder, or one ckpt-NNNNNN folder */
  checkpoint: string;
  format: ExportFormat;
  /** the file to write (default: model.onnx / model.safetensors in the run folder, else in the folder given) */
  out?: string | undefined;
  /** ONNX opset (default 13) */
  opset?: number | undefined;
  /** ONNX: the graph takes pixels in [0, 1] and normalises them itself */
  bakeNormalization?: boolean | undefined;
  /** the dataset's path, when it moved since training (its classes, shape and normalisation are needed) */
  data?: string | undefined;
}

export interface ExportReport {
  path: string;
  format: ExportFormat;
  bytes: number;
  checkpoint: string;
  step: number | null;
  model: string;
  parameters: number;
  classes: readonly string[];
  /** [C, H, W] of the input */
  inputShape: readonly number[];
  normalization: { mean: readonly number[]; std: readonly number[] };
  /** ONNX only */
  opset?: number;
  bakedNormalization?: boolean;
}

/** Traces with this batch: an unusual size, so a reshape that keeps the batch dimension is told from one that does not. */
const TRACE_BATCH = 5;

export async function exportCheckpoint(o: ExportOptions, opts: { device?: Device; log?: (s: string) => void } = {}): Promise<ExportReport> {
  const log = opts.log ?? (() => {});
  if (o.format !== 'onnx' && (o.opset !== undefined || o.bakeNormalization)) {
    throw new Error(`--opset and --bake-normalization apply to --format onnx only (given --format ${o.format})`);
  }
  const trained = await openTrainedCheckpoint(o.checkpoint);
  const ckpt = trained.checkpoint;
  const config = validateConfig({ ...ckpt.sidecar.config, ...(o.data ? { data: o.data } : {}) }, `${ckpt.dir} + command line`);
  const data = await trainedData(trained, config, log);
  const device = opts.device ?? (await createDevice());
  try {
    const model = await restoreTrainedModel(device, config, data, trained, opts.log);
    try {
      const ext = o.format === 'onnx' ? 'onnx' : 'safetensors';
      const path = o.out ?? join(trained.runDir ?? o.checkpoint, `model.${ext}`);
      const norm = { mean: [...data.normalization.mean], std: [...data.normalization.std] };
      const metadata: Record<string, string> = {
        model: basename(config.model),
        classes: JSON.stringify(data.classNames),
        input_shape: JSON.stringify(data.shape),
        normalization: JSON.stringify(norm),
        checkpoint: ckpt.dir,
        step: String(ckpt.step ?? ''),
      };
      let bytes: number;
      const report: ExportReport = {
        path, format: o.format, bytes: 0, checkpoint: ckpt.dir, step: ckpt.step, model: config.model, parameters: parameterCount(model),
        classes: data.classNames, inputShape: data.shape, normalization: norm,
      };
      if (o.format === 'onnx') {
        const opset = o.opset ?? ONNX_OPSETS.default;
        const baked = Boolean(o.bakeNormalization);
        log(`tracing ${config.model} in eval mode for ONNX opset ${opset}${baked ? ' with the normalisation in the graph' : ''}`);
        const sample = zeros(device, [TRACE_BATCH, ...data.shape]);
        let onnx: Uint8Array;
        try {
          onnx = await exportOnnx(model, sample, {
            opset,
            normalization: baked ? norm : null,
            metadata: { ...metadata, input: baked ? 'pixels / 255 in [0, 1], NCHW float32' : '(pixels / 255 − mean) / std per channel, NCHW float32' },
          });
        } finally {
          sample.dispose();
        }
        bytes = await withPathAsync(path, 'write', () => writeFileAtomic(path, onnx));
        Object.assign(report, { opset, bakedNormalization: baked });
      } else {
        bytes = await withPathAsync(path, 'write', async () => writeSafetensors(path, await stateTensors(model), metadata));
      }
      report.bytes = bytes;
      return report;
    } finally {
      model.dispose();
    }
  } finally {
    if (!opts.device) await device.close();
  }
}

export function formatExportReport(r: ExportReport): string {
  const [c, h, w] = r.inputShape;
  const lines = [
    `${r.checkpoint}: ${r.model} at step ${r.step ?? '?'} (${r.parameters.toLocaleString('en')} parameters), ${r.classes.length} classes, input ${c}×${h}×${w}`,
  ];
  if (r.format === 'onnx') {
    lines.push(
      `ONNX opset ${r.opset}: input 'input' [batch, ${c}, ${h}, ${w}] float32 ` +
        (r.bakedNormalization ? '(pixels / 255 in [0, 1]; the normalisation is in the graph)' : `(normalised: (pixels / 255 − mean) / std, mean [${r.normalization.mean.map((v) => v.toFixed(4)).join(', ')}], std [${r.normalization.std.map((v) => v.toFixed(4)).join(', ')}])`),
      `output 'logits' [batch, ${r.classes.length}]`,
    );
  } else {
    lines.push("safetensors with PyTorch's state_dict names (model.load_state_dict(strict=True) on the same architecture)");
  }
  lines.push(`wrote ${r.path} (${r.bytes.toLocaleString('en')} bytes)`);
  return lines.join('\n');
}
