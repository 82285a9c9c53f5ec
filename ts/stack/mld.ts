/**
 * Multicast Listener Discovery version 2 (RFC 3810), the host side: when the stack joins a
 * group (the solicited-node groups of its addresses, ff02::2 for a router, groups joined by
 * applications) it sends an unsolicited report (CHANGE_TO_EXCLUDE_MODE with no sources) and
 * repeats it [Robustness Variable] − 1 times at random intervals of up to the Unsolicited Report
 * Interval; on leaving, the same with CHANGE_TO_INCLUDE_MODE; and it answers general and
 * group-specific queries with current-state records (MODE_IS_EXCLUDE) after a random delay
 * within the query's maximum response delay. Reports go to ff02::16 with hop limit 1, a
 * router alert option, and a link-local source (or `::` before one is usable, RFC 3590).
 * ff02::1 is never reported (§6).
 *
 * Not done: source filtering (every group is joined in EXCLUDE mode with no sources, so
 * source-and-group-specific queries are answered as group-specific ones), the MLDv1
 * compatibility mode of §8 (an MLDv1 query is answered with an MLDv2 report), and the merging of
 * pending state-change records into one report.
 * @module
 */
import type { Clock, Timer } from '../clock.js';
import type { Icmpv6 } from './icmpv6.js';
import { ICMPV6, MLD_RECORD, MLD_RECORD_HEADER, type MldRecord, emitMldv2Report, parseMldQuery } from '../wire/icmpv6.js';
import {
  ALL_MLDV2_ROUTERS,
  type Ipv6Datagram,
  type Ipv6Interface,
  type Ipv6Layer,
  UNSPECIFIED,
  addressKey,
  isLinkLocal,
  isUnspecified,
} from './ipv6.js';

/** Options of MLD. */
export interface MldOptions {
  /** Robustness Variable: how many times each state change is reported (default 2). */
  robustness?: number;
  /** Unsolicited Report Interval in ms (default 1 s). */
  unsolicitedReportIntervalMs?: number;
}

/** MLD counters. */
export interface MldStats {
  reportsSent: number;
  queriesReceived: number;
  /** Queries that failed validation (hop limit, source, length). */
  invalid: number;
}

/** Router alert option (RFC 2711) with value 0: the datagram contains an MLD message. */
const ROUTER_ALERT_MLD = Buffer.from([5, 2, 0, 0]);
/** Records per report so that a report fits 1280 bytes with its headers. */
const RECORDS_PER_REPORT = Math.floor((1280 - 40 - 8 - 8) / MLD_RECORD_HEADER);

function reportable(group: Buffer): boolean {
  // ff0x::1 (all nodes) and reserved/interface-local scopes are never reported (RFC 3810 §6).
  const scope = group[1]! & 0x0f;
  if (scope <= 1) return false;
  return !(group[15] === 1 && group.subarray(2, 15).every((b) => b === 0));
}

/** MLDv2 for all interfaces of a stack. */
export class Mld {
  readonly #icmp: Icmpv6;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #robustness: number;
  readonly #intervalMs: number;
  readonly #timers = new Set<Timer>();
  readonly #generalPending = new Map<Ipv6Interface, { at: number; timer: Timer }>();
  #closed = false;
  readonly #stats: MldStats = { reportsSent: 0, queriesReceived: 0, invalid: 0 };

  constructor(ip: Ipv6Layer, icmp: Icmpv6, clock: Clock, randomUint32: () => number, options: MldOptions = {}) {
    this.#icmp = icmp;
    this.#clock = clock;
    this.#random = randomUint32;
    this.#robustness = Math.max(1, options.robustness ?? 2);
    this.#intervalMs = options.unsolicitedReportIntervalMs ?? 1_000;
    ip.onGroupChange((iface, group, joined) => this.#stateChange(iface, group, joined));
    icmp.on(ICMPV6.MLD_QUERY, (m, d) => this.#onQuery(m, d));
  }

  /** Counters. */
  stats(): MldStats {
    return { ...this.#stats };
  }

  #uniform(maxMs: number): number {
    return Math.floor((this.#random() / 0x1_0000_0000) * maxMs);
  }

  #later(delayMs: number, fn: () => void): Timer {
    const timer = this.#clock.setTimer(delayMs, () => {
      this.#timers.delete(timer);
      if (!this.#closed) fn();
    });
    this.#timers.add(timer);
    return timer;
  }

  #send(iface: Ipv6Interface, records: MldRecord[]): void {
    if (this.#closed || records.length === 0) return;
    const src = iface.addresses.find((e) => isLinkLocal(e.address) && (e.state === 'preferred' || e.state === 'deprecated'))?.address ?? UNSPECIFIED;
    for (let i = 0; i < records.length; i += RECORDS_PER_REPORT) {
      try {
        this.#icmp.send(ALL_MLDV2_ROUTERS, emitMldv2Report(records.slice(i, i + RECORDS_PER_REPORT)), {
          src,
          iface,
          hopLimit: 1,
          hopByHopOptions: ROUTER_ALERT_MLD,
        });
        this.#stats.reportsSent++;
      } catch {
        // A closed device: nothing to report to.
      }
    }
  }

  #stateChange(iface: Ipv6Interface, group: Buffer, joined: boolean): void {
    if (!reportable(group)) return;
    const record = { type: joined ? MLD_RECORD.CHANGE_TO_EXCLUDE : MLD_RECORD.CHANGE_TO_INCLUDE, group, sources: [] };
    this.#send(iface, [record]);
    for (let i = 1; i < this.#robustness; i++) {
      this.#later(this.#uniform(this.#intervalMs * i) + 1, () => {
        // A join retransmission is pointless once the group was left again (and vice versa).
        const member = iface.groups.has(addressKey(group));
        if (member === joined) this.#send(iface, [record]);
      });
    }
  }

  #currentState(iface: Ipv6Interface, only?: Buffer): MldRecord[] {
    const records: MldRecord[] = [];
    for (const { address } of iface.groups.values()) {
      if (!reportable(address) || (only && !only.equals(address))) continue;
      records.push({ type: MLD_RECORD.MODE_IS_EXCLUDE, group: address, sources: [] });
    }
    return records;
  }

  #onQuery(m: Buffer, d: Ipv6Datagram): void {
    // RFC 3810 §5.1.14 / §6: hop limit 1 and a link-local source, else ignore.
    if (d.hopLimit !== 1 || !isLinkLocal(d.src)) {
      this.#stats.invalid++;
      return;
    }
    let query;
    try {
      query = parseMldQuery(m);
    } catch {
      this.#stats.invalid++;
      return;
    }
    this.#stats.queriesReceived++;
    const iface = d.iface;
    const delay = this.#uniform(Math.max(1, query.maxResponseDelayMs));
    const at = this.#clock.now() + delay;
    if (isUnspecified(query.group)) {
      const pending = this.#generalPending.get(iface);
      if (pending && pending.at <= at) return; // an earlier answer is already scheduled
      pending?.timer.cancel();
      const timer = this.#later(delay, () => {
        this.#generalPending.delete(iface);
        this.#send(iface, this.#currentState(iface));
      });
      this.#generalPending.set(iface, { at, timer });
      return;
    }
    if (!iface.groups.has(addressKey(query.group))) return;
    const group = Buffer.from(query.group);
    this.#later(delay, () => this.#send(iface, this.#currentState(iface, group)));
  }

  /** Stops timers. */
  close(): void {
    this.#closed = true;
    for (const t of this.#timers) t.cancel();
    this.#timers.clear();
  }
}
