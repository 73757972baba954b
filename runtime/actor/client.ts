// Talking to actors from outside (CLI, tests, other actors): control requests, inbox sends, the live roster.
import { headers as natsHeaders, errors as natsErrors, type NatsConnection } from '@nats-io/nats-core';
import { jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { CleaveError, ErrorCode } from '../../protocols/errors.js';
import { Bucket, Header, Subject, type Role } from '../../protocols/subjects.js';
import type { ActorRecord, ControlReply, ControlRequest } from '../../protocols/messages.js';
import { encodeFrame, decodeFrame, type Tensor } from '../../protocols/tensor-codec.js';
import { actorsBucket } from '../nats/topology.js';
import { injectTrace, producerSpan } from '../tracing.js';

/** Sends a control request to one actor (`id`) or any actor of a role; typed errors come back as CleaveError. */
export async function controlRequest<T = unknown>(nc: NatsConnection, role: Role, id: string | undefined, req: ControlRequest, timeoutMs = 5000): Promise<T> {
  const subject = id ? Subject.control(role, id) : Subject.controlAny(role);
  return producerSpan(subject, async (span) => {
    const h = natsHeaders();
    injectTrace(h, span);
    let reply;
    try {
      reply = await nc.request(subject, encodeFrame({ tensors: {}, meta: req }), { timeout: timeoutMs, headers: h });
    } catch (e) {
      const noResponders = e instanceof natsErrors.NoRespondersError || (e instanceof natsErrors.RequestError && e.isNoResponders());
      const timedOut = e instanceof natsErrors.TimeoutError || (e instanceof Error && e.cause instanceof natsErrors.TimeoutError);
      if (noResponders) {
        throw new CleaveError(ErrorCode.NATS_UNAVAILABLE, `no ${role}${id ? ` '${id}'` : ''} is running to answer '${req.type}': start one with \`cleave actor ${role}\``);
      }
      if (timedOut) {
        throw new CleaveError(ErrorCode.TIMEOUT, `${role}${id ? ` '${id}'` : ''} did not answer '${req.type}' within ${timeoutMs} ms`);
      }
      throw e;
    }
    const body = decodeFrame(reply.data).meta as unknown as ControlReply;
    if (!body || typeof body !== 'object' || !('ok' in body)) {
      throw new CleaveError(ErrorCode.BAD_MESSAGE, `reply from ${subject} is not a control reply`);
    }
    if (!body.ok) {
      const err = CleaveError.fromWire(body.error);
      const code = reply.headers?.get(Header.ERROR_CODE);
      if (code && code !== err.code) err.details.headerCode = code;
      throw err;
    }
    return body.result as T;
  });
}

/** Puts durable work in a role's inbox. */
export async function sendToInbox(js: JetStreamClient, role: Role, type: string, meta: Record<string, unknown>, tensors: Record<string, Tensor> = {}, msgID?: string): Promise<void> {
  const subject = Subject.inbox(role, type);
  await producerSpan(subject, async (span) => {
    const h = natsHeaders();
    injectTrace(h, span);
    await js.publish(subject, encodeFrame({ tensors, meta }), { headers: h, ...(msgID ? { msgID } : {}) });
  });
}

/**
 * Every live actor, from the actors bucket (entries vanish when heartbeats stop). Keys come from the
 * bucket's stream info (one request) rather than kv.keys(): that ordered consumer waits for a message
 * it was told is pending, and an entry expiring between the count and the delivery left it waiting
 * forever (seen as a roster look-up that never returned while a killed actor's entry expired).
 */
export async function listActors(nc: NatsConnection): Promise<ActorRecord[]> {
  const kv = await actorsBucket(nc);
  const out: ActorRecord[] = [];
  const prefix = `$KV.${Bucket.ACTORS}.`;
  const info = await (await jetstreamManager(nc)).streams.info(`KV_${Bucket.ACTORS}`, { subjects_filter: `${prefix}>` });
  const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
  for (const k of keys) {
    const e = await kv.get(k);
    if (!e || e.operation !== 'PUT') continue;
    try {
      out.push(JSON.parse(e.string()) as ActorRecord);
    } catch {
      // a foreign value; not ours to show
    }
  }
  return out.sort((a, b) => a.role.localeCompare(b.role) || a.id.localeCompare(b.id));
}
