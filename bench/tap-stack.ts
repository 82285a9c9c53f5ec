/**
 * A Morgana stack on a TAP device inside a network namespace the benchmark creates (and
 * deletes), facing the kernel's own stack there: the kernel side of the link is `10.89.<subnet>.1`,
 * the Morgana stack `10.89.<subnet>.2`. Kernel-side peers (wrk, iperf3, a Node process) run in
 * the namespace with `ns.spawn` / `ns.exec`; no traffic leaves the namespace. The TAP has the
 * kernel's offloads, as `unix --net direct` opens it. Shared by the case modules that measure
 * Morgana against the kernel; needs root (see `kernelTestsUnavailable`).
 * @module
 */
import type { ChildProcess } from 'node:child_process';
import { type Stack, type StackOptions, createStack, openTap, tapNetDevice } from '../ts/index.js';
import { type Netns, createNetns } from '../__test__/helpers/netns.js';

/** A stack on a TAP device in a fresh namespace. */
export interface TapStack {
  ns: Netns;
  stack: Stack;
  /** The kernel's address on the link. */
  kernelAddress: string;
  /** The Morgana stack's address. */
  stackAddress: string;
  /** Closes the stack and deletes the namespace (killing what was spawned in it). */
  close(): Promise<void>;
}

/** Creates the namespace, the TAP device `mtapb<subnet>` and the stack; cleans up on failure. */
export async function tapStack(subnet: number, tcp?: StackOptions['tcp']): Promise<TapStack> {
  const ns = await createNetns();
  const name = `mtapb${subnet}`;
  const kernelAddress = `10.89.${subnet}.1`;
  const stackAddress = `10.89.${subnet}.2`;
  let stack: Stack | undefined;
  try {
    // With the kernel's offloads, as `unix --net direct` opens it: TSO super-frames out, GRO'd
    // frames with partial checksums in (a plain TAP when the kernel refuses the header).
    const tap = tapNetDevice(await openTap({ name, netns: ns.name, vnetHdr: true }));
    await ns.ip('addr', 'add', `${kernelAddress}/24`, 'dev', name);
    await ns.ip('link', 'set', name, 'up');
    stack = await createStack({ net: tap, ipv4: `${stackAddress}/24`, ...(tcp && { tcp }) });
    await stack.arp.query(kernelAddress);
  } catch (error) {
    await stack?.close();
    await ns.destroy();
    throw error;
  }
  const s = stack;
  return {
    ns,
    stack: s,
    kernelAddress,
    stackAddress,
    async close() {
      await s.close();
      await ns.destroy();
    },
  };
}

/** Resolves with the first line a child prints on stdout (its "ready" signal). */
export function firstLine(child: ChildProcess, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no output from the child within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve(text.slice(0, nl));
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`child exited (code ${code}, signal ${signal}) before it was ready`));
    });
  });
}

/** A counter that wakes a waiter once it reaches a target (requests served, bytes received…). */
export class Counter {
  count = 0;
  #target = Infinity;
  #wake: (() => void) | undefined;

  add(n = 1): void {
    this.count += n;
    if (this.count >= this.#target && this.#wake) {
      const wake = this.#wake;
      this.#wake = undefined;
      this.#target = Infinity;
      wake();
    }
  }

  /** Resolves once `n` more have been counted from now. */
  more(n: number, timeoutMs = 60_000): Promise<void> {
    const target = this.count + n;
    if (this.count >= target) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`counted ${this.count} of ${target} within ${timeoutMs} ms`)), timeoutMs);
      this.#target = target;
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
