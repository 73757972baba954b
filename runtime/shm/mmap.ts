// The mmap addon (runtime/shm/native/mmap.c, built by infra/build-native.mjs) when it is built and
// allowed (CLEAVE_MMAP=0 turns it off); undefined otherwise, and callers read files with read().
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../paths.js';

export interface MmapAddon {
  /** MAP_SHARED | MAP_POPULATE of the first `length` bytes of `fd` (which may be closed after). */
  map(fd: number, length: number, writable: boolean): ArrayBuffer;
  /** Unmaps a buffer from map() now and detaches it (its views then read as empty). False if not mapped. */
  unmap(buffer: ArrayBuffer): boolean;
}

let loaded: MmapAddon | null | undefined;

export function mmapAddon(): MmapAddon | undefined {
  if (loaded === undefined) {
    loaded = null;
    const file = join(projectRoot(), 'build', 'native', 'cleave_mmap.node');
    if (process.env.CLEAVE_MMAP !== '0' && existsSync(file)) {
      try {
        loaded = createRequire(import.meta.url)(file) as MmapAddon;
      } catch {
        // built for another Node or machine: read() it is
      }
    }
  }
  return loaded ?? undefined;
}
