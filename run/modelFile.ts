// A run's own model file and its identity: train records the file's SHA-256 in
// the configuration (so in every checkpoint); a resume refuses a changed file
// unless allowed (the weights were trained for the network as it was); eval and
// export warn and go on (the weights still have to fit the network as it is).
import { isModelFile, modelFileHash } from '../models/custom.ts';
import type { TrainConfig } from './config.ts';

/** The configuration with its model file's hash recorded (unchanged for a built-in model). */
export function withModelFileHash(c: TrainConfig): TrainConfig {
  return isModelFile(c.model) ? { ...c, modelSha256: modelFileHash(c.model) } : c;
}

/** What changed, or null: "the model file X changed since the run started (sha256 ab12… then, cd34… now)". */
export function modelFileChange(c: TrainConfig): { message: string; now: string } | null {
  if (!isModelFile(c.model) || !c.modelSha256) return null;
  const now = modelFileHash(c.model);
  if (now === c.modelSha256) return null;
  return { message: `the model file ${c.model} changed since the run started (SHA-256 ${c.modelSha256.slice(0, 12)}… then, ${now.slice(0, 12)}… now)`, now };
}

/**
 * On resume: refuses a changed model file unless `allow`; when allowed, says so
 * and records the new hash (the checkpoints from now on are the new file's).
 */
export function checkModelFileOnResume(c: TrainConfig, allow: boolean, log: (s: string) => void): TrainConfig {
  const change = modelFileChange(c);
  if (!change) return c;
  if (!allow) {
    throw new Error(`--resume: ${change.message}; its weights were trained for the network as it was. Pass --allow-model-change to continue with the file as it is now, or start a new run`);
  }
  log(`--resume: warning: ${change.message}; continuing with the file as it is now (--allow-model-change)`);
  return { ...c, modelSha256: change.now };
}

/** For commands that use a trained network (eval, export): a warning line, or null. */
export function modelFileWarning(c: TrainConfig): string | null {
  const change = modelFileChange(c);
  return change ? `warning: ${change.message}; using the file as it is now` : null;
}
