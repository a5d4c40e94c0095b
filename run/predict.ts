// The predict command's work: a trained checkpoint and image files or folders →
// each image's top-k classes with probabilities. Images are decoded and resized
// exactly as the training folder's were (the same size, resize mode and
// normalisation, read from the checkpoint), and the network runs in eval mode.
import { relative } from 'node:path';
import { type Device, createDevice } from '../gpu/device.ts';
import { type Tensor, keep, noGrad, tidy } from '../engine/tensor.ts';
import { type ResizeMode, collectImageFiles, decodeFiles } from '../data/imageFolder.ts';
import { type DataDescription, augmenterFor } from './session.ts';
import { openTrainedCheckpoint, restoreTrainedModel, trainedData } from './trained.ts';
import { validateConfig } from './config.ts';

export interface PredictOptions {
  /** a run folder (its newest checkpoint), its checkpoints/ folder, or one ckpt-NNNNNN folder */
  checkpoint: string;
  /** image files, and folders searched recursively */
  inputs: string[];
  /** classes shown per image (default 5, at most the number of classes) */
  topK?: number | undefined;
  /** images per forward pass (default 256) */
  batchSize?: number | undefined;
  /** refuse an unreadable image instead of skipping it */
  strict?: boolean | undefined;
}

export interface ClassProbability {
  class: string;
  index: number;
  probability: number;
}

export interface Prediction {
  path: string;
  top: ClassProbability[];
}

export interface PredictReport {
  checkpoint: string;
  step: number | null;
  model: string;
  classNames: string[];
  imageSize: number;
  resize: ResizeMode;
  normalization: DataDescription['normalization'];
  predictions: Prediction[];
  /** images that could not be decoded, with why */
  skipped: { path: string; reason: string }[];
}

/** Softmax of one row in float64 (the logits come back as f32). */
export function softmax(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** The k most probable classes, most probable first (ties: lower index first, as argmax). */
export function topK(probabilities: readonly number[], names: readonly string[], k: number): ClassProbability[] {
  return probabilities
    .map((p, i) => ({ class: names[i] ?? String(i), index: i, probability: p }))
    .sort((a, b) => b.probability - a.probability || a.index - b.index)
    .slice(0, k);
}

export async function predictImages(o: PredictOptions, opts: { device?: Device; log?: (s: string) => void } = {}): Promise<PredictReport> {
  const log = opts.log ?? (() => {});
  const trained = await openTrainedCheckpoint(o.checkpoint);
  const ckpt = trained.checkpoint;
  const config = validateConfig({ ...ckpt.sidecar.config }, `${ckpt.dir}: config`);
  const data = await trainedData(trained, config, log);
  const [channels, height, width] = data.shape;
  if (channels !== 3 || height !== width) throw new Error(`${ckpt.dir}: the network takes ${channels}×${height}×${width} images; predict decodes RGB squares`);
  const k = Math.min(o.topK ?? 5, data.classNames.length);
  if (!Number.isInteger(k) || k < 1) throw new Error(`--top: expected a positive integer, got ${o.topK}`);
  const batchSize = o.batchSize ?? 256;
  const paths = await collectImageFiles(o.inputs);
  const resize: ResizeMode = config.resize ?? 'crop';
  const decoded = await decodeFiles(
    paths.map((p) => ({ rel: p, path: p, label: 0, size: 0, mtimeMs: 0 })),
    { size: height, mode: resize, strict: o.strict ?? false },
  );
  const bad = new Set(decoded.skipped.map((s) => s.path));
  for (const s of decoded.skipped) log(`warning: skipped ${s.path}: ${s.reason}`);
  const kept = paths.filter((p) => !bad.has(p));
  const device = opts.device ?? (await createDevice());
  const predictions: Prediction[] = [];
  try {
    const model = await restoreTrainedModel(device, config, data, trained);
    const augmenter = augmenterFor(device, config, data);
    try {
      model.eval();
      const per = channels * height * width;
      const parts: Tensor[] = [];
      noGrad(() => {
        for (let i = 0; i < kept.length; i += batchSize) {
          const end = Math.min(kept.length, i + batchSize);
          const x = augmenter.eval(decoded.images.subarray(i * per, end * per));
          parts.push(keep(tidy(() => model.forward(x))));
          x.dispose();
        }
      });
      let at = 0;
      for (const logits of parts) {
        const values = await logits.toArray();
        const n = logits.shape[0]!;
        const c = logits.shape[1]!;
        for (let r = 0; r < n; r++) predictions.push({ path: kept[at + r]!, top: topK(softmax(values.subarray(r * c, (r + 1) * c)), data.classNames, k) });
        at += n;
        logits.dispose();
      }
    } finally {
      augmenter.dispose();
      model.dispose();
    }
  } finally {
    if (!opts.device) await device.close();
  }
  return {
    checkpoint: ckpt.dir, step: ckpt.step, model: config.model, classNames: [...data.classNames], imageSize: height, resize, normalization: data.normalization,
    predictions, skipped: decoded.skipped,
  };
}

/** The terminal table: one line per image, its top classes with probabilities. */
export function formatPredictions(r: PredictReport, cwd = process.cwd()): string {
  const shown = (p: string): string => (p.startsWith('/') && !relative(cwd, p).startsWith('..') ? relative(cwd, p) : p);
  const width = Math.min(60, Math.max(5, ...r.predictions.map((p) => shown(p.path).length)));
  const lines = [`${r.checkpoint}: ${r.model} at step ${r.step ?? '?'}, ${r.classNames.length} classes, images ${r.imageSize}×${r.imageSize} (${r.resize})`];
  lines.push(`${'image'.padEnd(width)}  top ${r.predictions[0]?.top.length ?? 0} (class probability)`);
  for (const p of r.predictions) {
    lines.push(`${shown(p.path).padEnd(width)}  ${p.top.map((t) => `${t.class} ${(100 * t.probability).toFixed(1)}%`).join('  ')}`);
  }
  if (r.skipped.length) lines.push(`${r.skipped.length} image${r.skipped.length > 1 ? 's' : ''} skipped (unreadable; named above)`);
  return lines.join('\n');
}
