// Names on the wire: roles, subjects, streams, KV buckets and object stores, and the headers Cleave sets.
// Everything an actor publishes or subscribes to is spelled here, nowhere else.

export const Role = {
  GRAPH_ANALYZER: 'graph-analyzer',
  PLANNER: 'planner',
  COORDINATOR: 'coordinator',
  EXECUTOR: 'executor',
  MEMORY_POOL: 'memory-pool',
  REPARTITION_WATCHER: 'repartition-watcher',
} as const;
export type Role = (typeof Role)[keyof typeof Role];
export const ROLES: readonly Role[] = Object.values(Role);

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

export const Stream = {
  /** Durable work addressed to a role (analyse this model, plan that graph…): work-queue retention. */
  INBOX: 'CLEAVE_INBOX',
  /** Stage inputs of running models: work-queue retention, one durable consumer per stage. */
  WORK: 'CLEAVE_WORK',
  /** Final outputs of requests, per run. */
  RESULTS: 'CLEAVE_RESULTS',
  /** Everything an operator would want to replay: limits retention. */
  EVENTS: 'CLEAVE_EVENTS',
  /** Load and progress samples for the RepartitionWatcher. */
  METRICS: 'CLEAVE_METRICS',
  /** Messages an actor refused (malformed, unknown, failing past the delivery limit), with the reason. */
  PARKED: 'CLEAVE_PARKED',
  /** Chunks of frames too large for one message, by reference (`runtime/nats/frames.ts`). */
  BLOBS: 'CLEAVE_BLOBS',
} as const;
export type Stream = (typeof Stream)[keyof typeof Stream];

export const Bucket = {
  /** Live actors: `<role>.<id>` → ActorRecord; entries expire unless heartbeats refresh them. */
  ACTORS: 'cleave-actors',
  PLANS: 'cleave-plans',
  LOCKS: 'cleave-locks',
  BARRIERS: 'cleave-barriers',
  POOL: 'cleave-pool',
} as const;

export const ObjectStoreName = {
  /** Model and partition artifacts, by sha256. */
  ARTIFACTS: 'cleave-artifacts',
} as const;

export const Subject = {
  /** Request/reply control of one actor. */
  control: (role: Role, id: string) => `cleave.ctl.${role}.${id}`,
  /** Request/reply control of any one actor of a role (queue group). */
  controlAny: (role: Role) => `cleave.ctl.${role}`,
  inbox: (role: Role, type: string) => `cleave.inbox.${role}.${type}`,
  inboxFilter: (role: Role) => `cleave.inbox.${role}.>`,
  event: (role: Role, kind: string) => `cleave.events.${role}.${kind}`,
  parked: (role: Role) => `cleave.parked.${role}`,
  metrics: (role: Role, id: string) => `cleave.metrics.${role}.${id}`,
  work: (run: string, epoch: number, stage: number) => `cleave.work.${run}.${epoch}.${stage}`,
  results: (run: string) => `cleave.results.${run}`,
  /** Chunk `i` of a by-reference frame (`*` for all its chunks). */
  blob: (id: string, i: number | '*') => `cleave.blob.${id}.${i}`,
  /** Reads of one host's shared-memory frames by a process on another host (queue group per domain). */
  shmRead: (domain: string) => `cleave.shm.${domain}.read`,
  /** Reads of the frames one process of that host wrote (the process answers them itself, see runtime/shm/remote.ts). */
  shmReadBy: (domain: string, reader: string) => `cleave.shm.${domain}.read.${reader}`,
} as const;

export const Header = {
  TRACEPARENT: 'traceparent',
  TRACESTATE: 'tracestate',
  ERROR_CODE: 'Cleave-Error-Code',
  ERROR: 'Cleave-Error',
  /** Why a message was parked, and where it came from. */
  PARK_REASON: 'Cleave-Park-Reason',
  PARK_SUBJECT: 'Cleave-Park-Subject',
  PARK_ACTOR: 'Cleave-Park-Actor',
  /** The message's tensors are in a shared-memory frame of the sender's host (`runtime/shm/pool.ts`). */
  SHM: 'Cleave-Shm',
  /** JetStream de-duplication id. */
  MSG_ID: 'Nats-Msg-Id',
  /** Filler that makes a message's header block a multiple of 8 bytes (runtime/nats/frames.ts). */
  PAD: 'Cleave-Pad',
} as const;

/** Heartbeat period and the registration TTL that follows from it (three missed beats). */
export const HEARTBEAT_MS = 2_000;
export const ACTOR_TTL_MS = 3 * HEARTBEAT_MS;
