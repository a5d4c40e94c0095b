// File-system errors as one line that names the file and says why in words:
// Node's own messages omit the path for write/fsync failures ("ENOSPC: no
// space left on device, write") and users should not have to decode errno names.

const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ENOENT: 'no such file or folder',
  ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'is a folder, not a file',
  EEXIST: 'exists and is not a folder',
  EIO: 'input/output error (failing disk?)',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'name too long',
};

const DESCRIBED = new WeakSet<Error>();

/** An Error `PATH: cannot VERB: REASON`; errors that are not file-system errors pass through unchanged. */
export function describeFsError(e: unknown, path: string, verb: string): Error {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (e instanceof Error && DESCRIBED.has(e)) return e; // the innermost path is the precise one
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) return e instanceof Error ? e : new Error(String(e));
  const err = new Error(`${path}: cannot ${verb}: ${REASONS[code] ?? (e as Error).message} (${code})`);
  (err as NodeJS.ErrnoException).code = code;
  DESCRIBED.add(err);
  return err;
}

/** Runs fn, turning a file-system error into describeFsError's one line. */
export function withPath<T>(path: string, verb: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw describeFsError(e, path, verb);
  }
}

/** withPath for promises. */
export async function withPathAsync<T>(path: string, verb: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw describeFsError(e, path, verb);
  }
}
