// One line of usage per `cleave` command: listed by `cleave --help`, printed by `cleave <command>
// --help`, and ending the BAD_ARGUMENT error of a command given arguments it does not take.

export const COMMAND_SUMMARIES = {
  actor: 'actor <role> [--id ID]          run one actor in the foreground',
  up: 'up [--executors N] [--detach]     start embedded NATS and one actor of each role',
  down: 'down                             stop what `up --detach` started',
  status: 'status [--json]                  list live actors',
  analyze: 'analyze <model> [--input N=d,..] [--json]   cost every node, list cuts',
  plan: 'plan <model>|--graph G --executors FILE [--objective throughput|latency] [--json] [--out PLAN]',
  split: 'split <model> --plan PLAN --out DIR   write one ONNX file per stage',
  infer: 'infer <model> [--input NAME=d,d,...] [--executors N] [--requests N] [--rate R] [--max-in-flight N] [--max-stages N] [--objective throughput|latency] [--images digits] [--compare] [--json]',
  demo: 'demo                             the main job (what `npm start` runs)',
  bench: 'bench <codec|planner|conformance|pipeline|executor|hop> [--json]',
} as const;

export type CommandName = keyof typeof COMMAND_SUMMARIES;

/** `usage: cleave <the command's summary>`. */
export function usageOf(name: CommandName): string {
  return `usage: cleave ${COMMAND_SUMMARIES[name]}`;
}
