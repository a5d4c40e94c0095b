// Files: crash-safe writes, safetensors, checkpoints.
export { writeFileAtomic, writeFileDurable, fsyncDir, removeStaleTemps, tempPathFor, isTempName } from './atomic.ts';
export {
  type SafetensorsDType, type TensorArray, type TensorEntry, type StoredTensor, type SafetensorsFile, type EncodedSafetensors,
  SafetensorsError, MAX_HEADER_BYTES, dtypeSize, encodeSafetensors, encodeSafetensorsChunks, decodeSafetensors,
  parseSafetensorsHeader, readSafetensors, writeSafetensors,
} from './safetensors.ts';
export {
  type Checkpoint, type SaveOptions, type SavedCheckpoint, type LoadedCheckpoint, CheckpointError, CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION, WEIGHTS_FILE, STATE_FILE, LATEST_FILE, saveCheckpoint, loadCheckpoint, listCheckpoints, latestCheckpointDir,
} from './checkpoint.ts';
