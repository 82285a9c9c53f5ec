/**
 * Two Morgana TAP devices on one Linux bridge inside a fresh network namespace: the kernel
 * bridge forwards between them, so this is a NET device pair on a real medium.
 */
import { type TapDevice, openTap } from 'morgana';
import { type Netns, createNetns, waitForwarding } from './netns.js';

export interface TapPair {
  a: TapDevice;
  b: TapDevice;
  ns: Netns;
  /** Closes both devices (idempotent) and deletes the namespace. */
  cleanup: () => Promise<void>;
}

export async function tapPair(options: { mtu?: number } = {}): Promise<TapPair> {
  const ns = await createNetns();
  const opened: TapDevice[] = [];
  const cleanup = async () => {
    for (const d of opened) await d.close();
    await ns.destroy();
  };
  try {
    await ns.ip('link', 'add', 'mbr0', 'type', 'bridge');
    for (const name of ['mtap0', 'mtap1']) {
      opened.push(await openTap({ name, netns: ns.name, ...(options.mtu ? { mtu: options.mtu } : {}) }));
      await ns.ip('link', 'set', name, 'master', 'mbr0');
      await ns.ip('link', 'set', name, 'up');
    }
    await ns.ip('link', 'set', 'mbr0', 'up');
    await waitForwarding(ns, ['mtap0', 'mtap1']);
    return { a: opened[0]!, b: opened[1]!, ns, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
