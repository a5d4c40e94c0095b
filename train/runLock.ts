// An exclusive lock on a run folder, so two trainings never write one folder's
// metrics and checkpoints at once. The lock is the file `.lock` holding the
// owner's pid, host and start time; it is created complete and atomically by
// writing a private temporary file and hard-linking it to `.lock` (link fails
// with EEXIST when the lock is held; a bare O_EXCL create could be seen empty).
// A lock whose process is gone (same host, no such pid) is stale: it is taken
// over with a message. The lock is released at the end of the run and, as a
// last resort, when the process exits (a second Ctrl-C).
import { hostname } from 'node:os';
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeFsError } from '../engine/io/fsErrors.ts';
import { tempPathFor } from '../engine/io/atomic.ts';

export const LOCK_FILE = '.lock';

interface LockOwner {
  pid: number;
  host: string;
  started: string;
}

function readOwner(path: string): LockOwner | null {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? o : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

export class RunLock {
  private released = false;
  private readonly onExit = (): void => this.release();

  private constructor(
    readonly path: string,
    private readonly owner: LockOwner,
  ) {
    process.on('exit', this.onExit);
  }

  /** Takes the lock on `dir` (which must exist) or throws a one-line error naming the holder. */
  static acquire(dir: string, log: (s: string) => void): RunLock {
    const path = join(dir, LOCK_FILE);
    const owner: LockOwner = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
    const tmp = tempPathFor(path);
    try {
      writeFileSync(tmp, `${JSON.stringify(owner)}\n`, { flag: 'wx' });
    } catch (e) {
      throw describeFsError(e, dir, 'write to the run folder');
    }
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          linkSync(tmp, path);
          return new RunLock(path, owner);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw describeFsError(e, path, 'create the lock');
        }
        const holder = readOwner(path);
        if (holder && holder.host !== owner.host) {
          throw new Error(`${dir} is locked by pid ${holder.pid} on host ${holder.host} (since ${holder.started}); if that training is no longer running, delete ${path}`);
        }
        if (holder && alive(holder.pid)) {
          throw new Error(`${dir} is in use by another training (pid ${holder.pid}, since ${holder.started}); wait for it to finish or stop it, or use another --out (if pid ${holder.pid} is not a training, delete ${path})`);
        }
        // stale: move it aside, and put it back if another process took it over in between
        const aside = tempPathFor(path);
        try {
          renameSync(path, aside);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
          throw describeFsError(e, path, 'take over the stale lock');
        }
        const moved = readOwner(aside);
        if (holder && moved && moved.pid !== holder.pid) {
          try {
            linkSync(aside, path);
          } catch {
            // the new holder's lock could not be restored; it still holds its own pid check at release
          }
          unlinkSync(aside);
          continue;
        }
        unlinkSync(aside);
        log(holder ? `${path}: taking over the stale lock of pid ${holder.pid} (no such process; it was killed or crashed)` : `${path}: replacing an unreadable lock file`);
      }
      throw new Error(`${path}: could not take the lock (another process keeps taking it)`);
    } finally {
      try {
        unlinkSync(tmp);
      } catch {
        // already gone
      }
    }
  }

  /** Removes the lock if it is still this process's. */
  release(): void {
    if (this.released) return;
    this.released = true;
    process.off('exit', this.onExit);
    const holder = readOwner(this.path);
    if (holder && holder.pid === this.owner.pid && holder.started === this.owner.started) {
      try {
        unlinkSync(this.path);
      } catch {
        // the folder went away: nothing to release
      }
    }
  }
}
