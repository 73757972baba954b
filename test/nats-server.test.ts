import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager, jetstream } from '@nats-io/jetstream';
import { startNatsServer, startNatsCluster, isAlive, natsServerProcs } from '../runtime/nats/server.js';
import { CleaveError, ErrorCode } from '../protocols/errors.js';

test('nats-server - starts on an OS-chosen port with JetStream, and stop removes its temp store', async () => {
  const server = await startNatsServer();
  assert.match(server.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(server.url, 'nats://127.0.0.1:4222');
  const nc = await connect({ servers: server.url });
  const jsm = await jetstreamManager(nc);
  const info = await jsm.getAccountInfo();
  assert.equal(typeof info.limits.max_memory, 'number');
  // The project's nats.conf is in force: its deliberate max_payload.
  assert.equal(nc.info?.max_payload, 16 * 1024 * 1024);
  await nc.close();
  assert.ok(existsSync(server.storeDir));
  await server.stop();
  assert.equal(isAlive(server.pid), false);
  assert.equal(existsSync(server.workDir), false);
});

test('nats-server - pure: GOMAXPROCS is the user\'s when set, else half the cores, at least one', () => {
  assert.equal(natsServerProcs({}, 2), 1);
  assert.equal(natsServerProcs({}, 1), 1);
  assert.equal(natsServerProcs({}, 8), 4);
  assert.equal(natsServerProcs({ GOMAXPROCS: '3' }, 8), 3);
  assert.equal(natsServerProcs({ CLEAVE_NATS_PROCS: '2', GOMAXPROCS: '3' }, 8), 2);
  // Nonsense is ignored, not passed to Go (which would fall back to every core).
  assert.equal(natsServerProcs({ CLEAVE_NATS_PROCS: 'lots', GOMAXPROCS: '0' }, 6), 3);
});

test('nats-server - the server runs with the GOMAXPROCS it was given (its /varz says so)', async () => {
  for (const procs of [1, 2]) {
    const server = await startNatsServer({ procs });
    try {
      assert.ok(server.monitorUrl, 'the monitoring port is open');
      const varz = (await (await fetch(`${server.monitorUrl}/varz`)).json()) as { gomaxprocs: number };
      assert.equal(varz.gomaxprocs, procs);
    } finally {
      await server.stop();
    }
  }
});

test('nats-server - a procs that is not a positive integer is refused before anything starts', async () => {
  for (const procs of [0, -1, 1.5, Number.NaN]) {
    await assert.rejects(startNatsServer({ procs }), (e: unknown) => e instanceof CleaveError && e.code === ErrorCode.BAD_ARGUMENT && /positive integer/.test(e.message));
  }
});

test('nats-server - two servers side by side never share a port or a store', async () => {
  const [a, b] = await Promise.all([startNatsServer(), startNatsServer()]);
  try {
    assert.notEqual(a.url, b.url);
    assert.notEqual(a.storeDir, b.storeDir);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('nats-server - a crash of the owning process leaves no orphan server', async () => {
  const { spawn } = await import('node:child_process');
  const code = `
    import { startNatsServer } from ${JSON.stringify(new URL('../runtime/nats/server.ts', import.meta.url).href)};
    const s = await startNatsServer();
    process.stdout.write(String(s.pid) + '\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  assert.ok(isAlive(pid));
  child.kill('SIGKILL');
  const deadline = Date.now() + 5000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(isAlive(pid), false, 'nats-server outlived the process that started it');
});

test('nats-cluster - three JetStream nodes agree on a meta leader and replicate a stream', async () => {
  const cluster = await startNatsCluster(3);
  try {
    const leader = await cluster.waitForMetaLeader();
    assert.match(leader, /^cleave-test-\d$/);
    const nc = await connect({ servers: cluster.urls });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
    const js = jetstream(nc);
    await js.publish('r3.a', new Uint8Array([1, 2, 3]));
    const si = await jsm.streams.info('R3');
    assert.equal(si.state.messages, 1);
    assert.equal((si.cluster?.replicas?.length ?? 0) + 1, 3);
    await nc.close();
  } finally {
    await cluster.stop();
  }
});
