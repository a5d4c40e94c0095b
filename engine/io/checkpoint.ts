// Checkpoints: the tensors in `model.safetensors` (loadable by PyTorch's
// safetensors.torch.load_file) and everything else (step, optimizer state, RNG
// states, config) in a `state.json` sidecar, laid out so that a crash at any
// instant leaves the previous checkpoint loadable and a reader never pairs a
// sidecar with the weights of another step:
//
//   ROOT/
//     latest                 "ckpt-000007\n": the committed checkpoint, replaced atomically
//     ckpt-000006/           an older one, kept until pruned (`keep`)
//     ckpt-000007/
//       model.safetensors
//       state.json           {format, version, seq, step, savedAt, weights: {file, bytes, sha256}, sidecar}
//     .ckpt-000008.tmp-…/    a checkpoint being written (or left by a crash; removed by the next save)
//
// A save writes both files into a hidden temporary folder (each fsynced), fsyncs
// it, renames it to `ckpt-NNNNNN` in one step, fsyncs ROOT, then replaces
// `latest` atomically (temporary file + rename), and only then prunes older
// folders (renamed away before deletion, so none is ever seen half deleted).
// The sidecar records the weights' size and SHA-256, so a load refuses a
// damaged or substituted weights file. One writer per ROOT at a time.
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, removeStaleTemps, tempPathFor, writeFileAtomic, writeFileDurable } from './atomic.ts';
import { describeFsError, withPathAsync } from './fsErrors.ts';
import { type StoredTensor, type TensorEntry, SafetensorsError, decodeSafetensors, encodeSafetensorsChunks } from './safetensors.ts';

export const CHECKPOINT_FORMAT = 'onecycle-gpu-checkpoint';
export const CHECKPOINT_VERSION = 1;
export const WEIGHTS_FILE = 'model.safetensors';
export const STATE_FILE = 'state.json';
export const LATEST_FILE = 'latest';

const NAME_RE = /^ckpt-(\d{6,})$/;

export interface Checkpoint<S> {
  tensors: Record<string, TensorEntry>;
  /** JSON-serialisable state: optimizer, step, RNG states, config... */
  sidecar: S;
  /** training step, recorded in state.json and the safetensors metadata */
  step?: number;
}

export interface SaveOptions {
  /** how many committed checkpoints to keep, the new one included (default 2, at least 1) */
  keep?: number;
  /** extra string metadata for model.safetensors' `__metadata__` */
  metadata?: Record<string, string>;
  /** folder names never pruned by this save, beyond `keep` (a training's last checkpoint known good) */
  retain?: string[];
}

export interface SavedCheckpoint {
  /** the checkpoint's folder */
  dir: string;
  name: string;
  seq: number;
}

export interface LoadedCheckpoint<S> {
  tensors: Record<string, StoredTensor>;
  sidecar: S;
  step: number | null;
  seq: number;
  dir: string;
  savedAt: string;
}

interface StateFile {
  format: string;
  version: number;
  seq: number;
  step: number | null;
  savedAt: string;
  weights: { file: string; bytes: number; sha256: string };
  sidecar: unknown;
}

/** A checkpoint that cannot be loaded: `path` names the file or folder, `reason` says why. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: cannot load checkpoint: ${reason}`);
  }
}

/** The committed checkpoint folders under `root`, oldest first (by sequence number). */
export async function listCheckpoints(root: string): Promise<{ name: string; seq: number }[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names
    .map((name) => ({ name, m: NAME_RE.exec(name) }))
    .filter((x): x is { name: string; m: RegExpExecArray } => x.m !== null)
    .map(({ name, m }) => ({ name, seq: Number(m[1]) }))
    .sort((a, b) => a.seq - b.seq);
}

/** Saves a new checkpoint under `root` and makes it the latest; see the file header for the protocol. */
export async function saveCheckpoint<S>(root: string, ckpt: Checkpoint<S>, options: SaveOptions = {}): Promise<SavedCheckpoint> {
  const keep = options.keep ?? 2;
  if (!Number.isInteger(keep) || keep < 1) throw new Error(`saveCheckpoint: keep must be an integer ≥ 1, got ${keep}`);
  const step = ckpt.step ?? null;
  if (step !== null && !Number.isSafeInteger(step)) throw new Error(`saveCheckpoint: step must be an integer, got ${step}`);
  let sidecarJson: string;
  try {
    sidecarJson = JSON.stringify(ckpt.sidecar);
  } catch (e) {
    throw new Error(`saveCheckpoint: the sidecar is not JSON-serialisable (${(e as Error).message})`);
  }
  if (sidecarJson === undefined) throw new Error('saveCheckpoint: the sidecar is not JSON-serialisable (undefined)');

  await withPathAsync(root, 'create the checkpoint folder', () => mkdir(root, { recursive: true }));
  await removeStaleTemps(root);
  const existing = await listCheckpoints(root);
  const seq = (existing[existing.length - 1]?.seq ?? 0) + 1;
  const name = `ckpt-${String(seq).padStart(6, '0')}`;
  const dir = join(root, name);
  const tmp = tempPathFor(dir);

  const metadata: Record<string, string> = { ...options.metadata, format: CHECKPOINT_FORMAT, seq: String(seq) };
  if (step !== null) metadata.step = String(step);
  const { header, chunks } = encodeSafetensorsChunks(ckpt.tensors, metadata);
  const hash = createHash('sha256');
  async function* hashed(): AsyncGenerator<Uint8Array> {
    for (const c of [header, ...chunks]) {
      hash.update(c);
      yield c;
    }
  }

  await withPathAsync(root, 'write a checkpoint', () => mkdir(tmp));
  // the file being written, for the message of a failure (ENOSPC has no path of its own)
  let writing = join(dir, WEIGHTS_FILE);
  try {
    const bytes = await writeFileDurable(join(tmp, WEIGHTS_FILE), hashed());
    writing = join(dir, STATE_FILE);
    const state: StateFile = {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      seq,
      step,
      savedAt: new Date().toISOString(),
      weights: { file: WEIGHTS_FILE, bytes, sha256: hash.digest('hex') },
      sidecar: JSON.parse(sidecarJson) as unknown,
    };
    await writeFileDurable(join(tmp, STATE_FILE), `${JSON.stringify(state, null, 1)}\n`);
    writing = dir;
    await fsyncDir(tmp);
    await rename(tmp, dir);
    await fsyncDir(root);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw describeFsError(e, writing, 'write the checkpoint');
  }
  await withPathAsync(join(root, LATEST_FILE), 'write', () => writeFileAtomic(join(root, LATEST_FILE), `${name}\n`));

  const committed = await listCheckpoints(root);
  for (const old of committed.slice(0, Math.max(0, committed.length - keep))) {
    if (old.name === name || options.retain?.includes(old.name)) continue;
    const doomed = tempPathFor(join(root, old.name));
    await rename(join(root, old.name), doomed);
    await rm(doomed, { recursive: true, force: true });
  }
  return { dir, name, seq };
}

/**
 * The folder of the latest committed checkpoint under `root`, or null when none
 * was ever committed. Without a `latest` pointer (a crash between the first
 * save's rename and its pointer), the newest `ckpt-NNNNNN` folder: a folder
 * only gets that name once both its files are complete and synced.
 */
export async function latestCheckpointDir(root: string): Promise<string | null> {
  let pointer: string;
  try {
    pointer = (await readFile(join(root, LATEST_FILE), 'utf8')).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      const committed = await listCheckpoints(root);
      const newest = committed[committed.length - 1];
      return newest ? join(root, newest.name) : null;
    }
    throw new CheckpointError(join(root, LATEST_FILE), `cannot be read (${(e as Error).message})`);
  }
  if (!NAME_RE.test(pointer)) throw new CheckpointError(join(root, LATEST_FILE), `does not name a checkpoint folder (contents ${JSON.stringify(pointer.slice(0, 40))})`);
  return join(root, pointer);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Loads a checkpoint: `path` is a ROOT (its `latest` is followed) or one
 * checkpoint's folder. Refuses, naming the file and the reason, a missing or
 * corrupt state.json, weights whose size or SHA-256 differ from what the
 * sidecar recorded, and an invalid safetensors file.
 */
export async function loadCheckpoint<S = unknown>(path: string): Promise<LoadedCheckpoint<S>> {
  let dir = await latestCheckpointDir(path);
  if (dir === null) {
    if (!(await exists(join(path, STATE_FILE)))) {
      throw new CheckpointError(path, `no checkpoint here (neither a '${LATEST_FILE}' pointer nor a ${STATE_FILE})`);
    }
    dir = path;
  } else if (!(await exists(dir))) {
    throw new CheckpointError(join(path, LATEST_FILE), `names ${dir}, which does not exist`);
  }

  const statePath = join(dir, STATE_FILE);
  let text: string;
  try {
    text = await readFile(statePath, 'utf8');
  } catch (e) {
    throw new CheckpointError(statePath, `cannot be read (${(e as Error).message})`);
  }
  let state: StateFile;
  try {
    state = JSON.parse(text) as StateFile;
  } catch (e) {
    throw new CheckpointError(statePath, `is not valid JSON (${(e as Error).message}); the file is truncated or corrupt`);
  }
  if (typeof state !== 'object' || state === null || state.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(statePath, `is not a ${CHECKPOINT_FORMAT} state file`);
  }
  if (state.version !== CHECKPOINT_VERSION) {
    throw new CheckpointError(statePath, `has format version ${String(state.version)}; this build reads version ${CHECKPOINT_VERSION}`);
  }
  const w = state.weights;
  if (typeof w !== 'object' || w === null || typeof w.file !== 'string' || w.file.includes('/') || typeof w.sha256 !== 'string' || typeof w.bytes !== 'number') {
    throw new CheckpointError(statePath, 'has no valid weights record {file, bytes, sha256}');
  }

  const weightsPath = join(dir, w.file);
  let bytes: Buffer;
  try {
    bytes = await readFile(weightsPath);
  } catch (e) {
    throw new CheckpointError(weightsPath, `cannot be read (${(e as Error).message})`);
  }
  if (bytes.byteLength !== w.bytes) {
    throw new CheckpointError(weightsPath, `is ${bytes.byteLength} bytes but ${STATE_FILE} recorded ${w.bytes} (truncated or replaced)`);
  }
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== w.sha256) throw new CheckpointError(weightsPath, `SHA-256 ${sha} differs from ${w.sha256} recorded in ${STATE_FILE} (corrupt or replaced)`);
  let tensors: Record<string, StoredTensor>;
  try {
    tensors = decodeSafetensors(bytes, weightsPath).tensors;
  } catch (e) {
    if (e instanceof SafetensorsError) throw new CheckpointError(weightsPath, e.reason);
    throw e;
  }
  return { tensors, sidecar: state.sidecar as S, step: state.step ?? null, seq: state.seq, dir, savedAt: state.savedAt };
}
