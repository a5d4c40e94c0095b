// A trained run's checkpoint, opened and turned back into a model: what `eval`
// (and every command that uses a trained network rather than training one)
// shares. The checks are train --resume's: every saved setting, the optimizer
// and loader state, and the weights against the model's state spec.
import { statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Device } from '../gpu/device.ts';
import { type LoadedCheckpoint, loadCheckpoint } from '../engine/io/checkpoint.ts';
import type { Module } from '../engine/nn/index.ts';
import type { Dataset } from '../data/dataset.ts';
import { type DataDescription, type TrainSidecar, checkStateTensors, describeData, loadDatasets, loadStateTensors, modelFor, modelName, stateSpec, validateTrainingCheckpoint } from './session.ts';
import type { TrainConfig } from './config.ts';
import { modelFileWarning } from './modelFile.ts';

export interface TrainedCheckpoint {
  /** the checkpoint as read, with its sidecar validated */
  checkpoint: LoadedCheckpoint<TrainSidecar>;
  /** the run folder, when the path given was one (else null) */
  runDir: string | null;
  /** the safetensors file the weights came from (for messages) */
  weightsPath: string;
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Opens `path`: a run folder (its checkpoints/), a checkpoints folder (its
 * `latest`) or one ckpt-NNNNNN folder. `flag` names the option in messages.
 */
export async function openTrainedCheckpoint(path: string, flag = '--checkpoint'): Promise<TrainedCheckpoint> {
  if (!existsSync(path)) throw new Error(`${flag} ${path}: no such file or folder`);
  if (!isDir(path)) throw new Error(`${flag} ${path}: not a folder (give a run folder, its checkpoints/ folder or one ckpt-NNNNNN folder)`);
  const runDir = isDir(join(path, 'checkpoints')) ? path : null;
  const loaded = await loadCheckpoint(runDir ? join(runDir, 'checkpoints') : path);
  const checked = validateTrainingCheckpoint(loaded);
  return { checkpoint: { ...loaded, sidecar: checked.sidecar }, runDir, weightsPath: checked.weightsPath };
}

/**
 * The model `config` names for `data`'s classes and channels, with the
 * checkpoint's weights and batchnorm statistics loaded (in train mode, as
 * modelFor builds it; the caller switches to eval). Disposed by the caller.
 */
export async function restoreTrainedModel(
  device: Device, config: TrainConfig, data: Dataset, trained: TrainedCheckpoint, log: (s: string) => void = (s) => void process.stderr.write(`${s}\n`),
): Promise<Module> {
  const changed = modelFileWarning(config);
  if (changed) log(changed);
  const model = await modelFor(device, config, data);
  try {
    checkStateTensors(stateSpec(model), trained.checkpoint.tensors, trained.weightsPath, `${modelName(config)} on ${data.name}`);
    loadStateTensors(model, trained.checkpoint.tensors);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/**
 * What the network was trained on (classes, normalisation, input shape) as an empty
 * dataset: from the checkpoint where it records it (so deployment needs no training
 * data), else, for checkpoints written before it did, from the training data.
 */
export async function trainedData(trained: TrainedCheckpoint, config: TrainConfig, log: (s: string) => void): Promise<Dataset> {
  const ckpt = trained.checkpoint;
  let data: DataDescription;
  if (ckpt.sidecar.data) data = ckpt.sidecar.data;
  else {
    log(`${ckpt.dir} does not record its classes and normalisation (an older checkpoint): reading them from its training data`);
    data = describeData((await loadDatasets(config, { log })).train);
  }
  return {
    name: data.name, images: new Uint8Array(0), labels: new Int32Array(0), numClasses: data.classNames.length, classNames: data.classNames,
    shape: data.shape, normalization: data.normalization,
  };
}
