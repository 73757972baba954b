// `cleave demo` (what `npm start` runs): the main job on an embedded deployment.
// Until pipeline inference lands, it brings every role up as its own process, shows the roster, and
// stops cleanly on Ctrl-C.
import up from './up.js';

export default async function demo(argv: string[]): Promise<number> {
  return up(['--executors', '3', ...argv]);
}
