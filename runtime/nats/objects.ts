// The object stores a deployment uses, opened once per connection. Digests use Node's crypto: the
// library's default pure-JS SHA-256 is ~10x slower on multi-MB objects.
import type { NatsConnection } from '@nats-io/nats-core';
import { Objm, StorageType, setSha256Backend, type ObjectStore } from '@nats-io/obj';
import { ObjectStoreName } from '../../protocols/subjects.js';

setSha256Backend('native');

const CONFIGS: Record<string, Parameters<Objm['create']>[1]> = {
  [ObjectStoreName.ARTIFACTS]: { storage: StorageType.File, description: 'model and partition artifacts by sha256' },
};

const opened = new WeakMap<NatsConnection, Map<string, Promise<ObjectStore>>>();

export function objectStore(nc: NatsConnection, name: (typeof ObjectStoreName)[keyof typeof ObjectStoreName]): Promise<ObjectStore> {
  let stores = opened.get(nc);
  if (!stores) opened.set(nc, (stores = new Map()));
  let s = stores.get(name);
  if (!s) {
    s = new Objm(nc).create(name, CONFIGS[name]);
    stores.set(name, s);
  }
  return s;
}
