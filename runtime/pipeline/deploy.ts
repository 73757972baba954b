// Deploying a model from a caller's side: upload it as an artifact, ask the Coordinator to deploy it.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { Role } from '../../protocols/subjects.js';
import type { Deployment } from '../../protocols/deployment.js';
import type { Constraints, LinkTable, Objective } from '../../protocols/plan.js';
import { controlRequest } from '../actor/client.js';
import { putArtifact } from './store.js';

export interface DeployOptions {
  run?: string;
  /** Sample input shapes that resolve dynamic dims (`{ x: [1, 3, 640, 640] }`). */
  inputs?: Record<string, number[]>;
  objective?: Objective;
  /** Executor ids to use; default every idle executor. */
  executors?: string[];
  maxStages?: number;
  /** Link speeds between executors; default: NATS measured by the coordinator at deploy time. */
  links?: LinkTable;
  /** Pins and manual stage boundaries, as the planner takes them. */
  constraints?: Constraints;
  /** Leave executors the plan does not need idle (`none`) or make them replicas (`spare`, default). */
  replicas?: 'none' | 'spare';
  /** Plan from measured per-node times (default, when inputs are concrete) or FLOP estimates only. */
  profile?: boolean;
  ackWaitMs?: number;
  maxDeliver?: number;
}

export async function deployModelFile(nc: NatsConnection, path: string, options: DeployOptions = {}): Promise<Deployment> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new CleaveError(ErrorCode.MODEL_NOT_FOUND, `cannot read model ${path}: ${(e as Error).message}`, { cause: e });
  }
  const artifact = await putArtifact(nc, bytes);
  return controlRequest<Deployment>(nc, Role.COORDINATOR, undefined, { type: 'deploy', artifact, name: basename(path), ...options }, 600_000);
}

export async function undeploy(nc: NatsConnection, run: string): Promise<void> {
  await controlRequest(nc, Role.COORDINATOR, undefined, { type: 'undeploy', run }, 120_000);
}
