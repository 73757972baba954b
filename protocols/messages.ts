// Control and inbox message shapes (wire), kept apart from the runtime's client-facing types.
import type { CleaveErrorWire } from './errors.js';
import type { Role } from './subjects.js';

/** What every actor puts in the actors bucket and refreshes with each heartbeat. */
export interface ActorRecord {
  role: Role;
  id: string;
  host: string;
  pid: number;
  /** Lifecycle state as the actor sees it (`serving`, `idle`, …). */
  state: string;
  startedAt: number;
  updatedAt: number;
  version: string;
  capabilities: Record<string, unknown>;
}

/** A control request: `type` picks the handler; other fields are its arguments. */
export interface ControlRequest {
  type: string;
  [arg: string]: unknown;
}

export type ControlReply = { ok: true; result: unknown } | { ok: false; error: CleaveErrorWire };

/** The built-in control requests every actor answers. */
export const ControlType = {
  PING: 'ping',
  STATUS: 'status',
} as const;

export interface PingResult {
  role: Role;
  id: string;
  pid: number;
  host: string;
  state: string;
  uptimeMs: number;
}

/** An event in CLEAVE_EVENTS: facts an operator replays to see what happened. */
export interface CleaveEvent {
  type: string;
  role: Role;
  actor: string;
  at: number;
  [field: string]: unknown;
}
