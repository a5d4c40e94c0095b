// `predict`: a trained checkpoint and image files or folders → each image's
// top-k classes with probabilities (run/predict.ts), as a table or JSON.
import { parseArgs } from 'node:util';
import { formatPredictions, predictImages } from '../run/predict.ts';

export const PREDICT_HELP = `usage: npm start -- predict --checkpoint PATH [flags] IMAGE|FOLDER...

Classifies images with a trained network: each image is decoded and resized as the training images
were (the size, resize mode (crop or pad) and channel normalisation saved with the checkpoint), the
network runs in eval mode, and the most probable classes are printed with their probabilities.
Folders are searched recursively for .jpg, .jpeg, .png and .webp files.

flags:
  --checkpoint PATH             a run folder (its newest checkpoint), its checkpoints/ folder, or one
                                checkpoints/ckpt-NNNNNN folder (required)
  --top N                       classes shown per image [5, at most the number of classes]
  --json                        print JSON (checkpoint, classes, and per image its top classes) instead of a table
  --batch-size N                images per forward pass [256]
  --strict                      refuse an unreadable image (default: name it on stderr and skip it)
  --quiet                       no progress lines on stderr
  --help                        this text

exit status: 0 classified; 1 error (a missing or corrupt checkpoint or image is named with the reason).`;

const PREDICT_FLAGS = {
  checkpoint: { type: 'string' },
  top: { type: 'string' },
  json: { type: 'boolean' },
  'batch-size': { type: 'string' },
  strict: { type: 'boolean' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive integer, got '${v}'`);
  return n;
}

export async function predictCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: PREDICT_FLAGS, allowPositionals: true, strict: true });
  if (values.help) {
    process.stdout.write(`${PREDICT_HELP}\n`);
    return 0;
  }
  if (!values.checkpoint) throw new Error('--checkpoint PATH is required (a run folder, its checkpoints/ folder or a ckpt-NNNNNN folder)');
  if (!positionals.length) throw new Error('no images given: name image files or folders after the flags');
  const report = await predictImages(
    { checkpoint: values.checkpoint, inputs: positionals, topK: positiveInt('top', values.top), batchSize: positiveInt('batch-size', values['batch-size']), strict: Boolean(values.strict) },
    { log: (s) => void (values.quiet || process.stderr.write(`${s}\n`)) },
  );
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatPredictions(report)}\n`);
  return 0;
}
