// A process hammering one shared-memory pool: writes frames whose values name this process and the
// round, reads each back and releases it. Run two at once on one directory: a file claimed by both
// would show as a frame with the other's values, or as FRAME_GONE. Prints a JSON summary.
import { ShmPool } from '../../runtime/shm/pool.js';
import { tensor } from '../../protocols/tensor-codec.js';

const [dir, who, rounds] = [process.argv[2]!, Number(process.argv[3]), Number(process.argv[4])];
const pool = ShmPool.open({ dir })!;
let bad = 0;
for (let r = 0; r < rounds; r++) {
  const n = 1000 + ((r * 7919) % 50_000); // varied sizes, so files move between size classes
  const ref = pool.writeFrame({ t: tensor('float32', [n], new Float32Array(n).fill(who * 1e6 + r)) });
  const back = pool.readFrame(ref).tensors.t!.data as Float32Array;
  if (back.length !== n || back[0] !== who * 1e6 + r || back[n - 1] !== who * 1e6 + r) bad++;
  pool.release(ref);
}
console.log(JSON.stringify({ who, bad, ...pool.stats }));
