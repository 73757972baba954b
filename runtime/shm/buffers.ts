// Reused memory for tensors that cross processes. On these machines a fresh page costs far more than
// the copy into it (~1-3 ms per MB on first touch, against ~0.05 ms per MB of memcpy into warm memory),
// so frames are read into buffers that are recycled rather than allocated per message.

/** One buffer reused from one frame to the next (grown when a bigger frame comes). */
export class Scratch {
  private buf = new Uint8Array(0);
  /** `n` bytes valid until the next call. 8-aligned, so decoded tensors are views. */
  get(n: number): Uint8Array {
    if (this.buf.length < n) this.buf = new Uint8Array(Math.max(n, Math.ceil(this.buf.length * 1.25)));
    return this.buf.subarray(0, n);
  }
}

/**
 * Buffers handed out to callers who give them back when done (`give`), for the next `take` of a
 * similar size. A buffer never given back is simply collected; the pool holds at most `maxBytes`.
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private held = 0;

  constructor(private readonly maxBytes = 256 * 1024 * 1024) {}

  /** `n` bytes in a buffer of their own (a recycled one when one fits without waste). */
  take(n: number): Uint8Array {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const c = this.free[i]!.byteLength;
      if (c >= n && c <= n * 2 + 65536 && (best < 0 || c < this.free[best]!.byteLength)) best = i;
    }
    if (best >= 0) {
      const b = this.free.splice(best, 1)[0]!;
      this.held -= b.byteLength;
      return new Uint8Array(b, 0, n);
    }
    return uninitializedBytes(n);
  }

  /** Returns a buffer from `take` (any view into it will do); using it afterwards is the caller's bug. */
  give(view: ArrayBufferView): void {
    const b = view.buffer;
    if (!(b instanceof ArrayBuffer) || b.byteLength === 0 || this.free.includes(b)) return;
    if (this.held + b.byteLength > this.maxBytes) return;
    this.free.push(b);
    this.held += b.byteLength;
  }

  get heldBytes(): number {
    return this.held;
  }
}

/** `n` bytes of memory of their own, not zeroed (callers write every byte): malloc'd memory is often
 *  warm where a zeroed allocation is fresh pages. */
export function uninitializedBytes(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer, b.byteOffset, n);
}

/** `n` elements of `Type` in memory from `alloc` (e.g. BufferPool.take) when it gives an aligned buffer, else new. */
export function floats<T extends Float32ArrayConstructor | Float64ArrayConstructor>(Type: T, n: number, alloc?: (bytes: number) => Uint8Array): InstanceType<T> {
  const bytes = alloc?.(n * Type.BYTES_PER_ELEMENT);
  return (bytes && bytes.byteOffset % Type.BYTES_PER_ELEMENT === 0 ? new Type(bytes.buffer as ArrayBuffer, bytes.byteOffset, n) : new Type(n)) as InstanceType<T>;
}
