/**
 * The conformance suite every NET device backend passes. A backend's spec file calls
 * `netConformance(test, 'name', makePair)` where `makePair` returns two devices on one medium:
 * a frame that one writes to the other's MAC (or to broadcast) reaches the other.
 */
import type { ExecutionContext, TestFn } from 'ava';
import type { NetDevice } from 'morgana';

export type MakePair = () => Promise<{ a: NetDevice; b: NetDevice; cleanup?: () => Promise<void> }>;

const macBytes = (mac: string) => Buffer.from(mac.replaceAll(':', ''), 'hex');

/** An Ethernet frame from `src` to `dst` with a recognisable payload. */
export function frame(dst: string, src: string, payload: Buffer, ethertype = 0x88b5): Buffer {
  const out = Buffer.alloc(14 + payload.length);
  macBytes(dst).copy(out, 0);
  macBytes(src).copy(out, 6);
  out.writeUInt16BE(ethertype, 12);
  payload.copy(out, 14);
  return out;
}

function send(device: NetDevice, bytes: Buffer): void {
  device.write(bytes.length, (buffer) => {
    bytes.copy(buffer);
    return bytes.length;
  });
}

/** Collects frames of the test EtherType (0x88b5, local experimental) until `count` arrived. */
function collect(device: NetDevice, count: number, timeoutMs = 5000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${count} frames arrived`)), timeoutMs);
    device.listen((f) => {
      if (f.readUInt16BE(12) !== 0x88b5) return; // kernel noise (IPv6 ND, etc.) on real media
      got.push(Buffer.from(f));
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

export function netConformance(test: TestFn, name: string, makePair: MakePair): void {
  const withPair = (title: string, body: (a: NetDevice, b: NetDevice, t: ExecutionContext) => Promise<void>) =>
    test.serial(`${name} conformance: ${title}`, async (t) => {
      const { a, b, cleanup } = await makePair();
      try {
        await body(a, b, t);
      } finally {
        await a.close();
        await b.close();
        await cleanup?.();
      }
    });

  withPair('MAC and MTU are sane', async (a, b, t) => {
    t.regex(a.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    t.not(a.mac, b.mac);
    t.true(a.mtu >= 68);
  });

  withPair('a frame arrives intact and is counted on both sides', async (a, b, t) => {
    const payload = Buffer.from('morgana conformance '.repeat(20));
    const arriving = collect(b, 1);
    const bytes = frame(b.mac, a.mac, payload);
    send(a, bytes);
    const [got] = await arriving;
    t.deepEqual(got!.subarray(0, bytes.length), bytes);
    t.true(a.stats().txFrames >= 1);
    t.true(a.stats().txBytes >= bytes.length);
    t.true(b.stats().rxFrames >= 1);
  });

  withPair('fill may use less than the size asked for', async (a, b, t) => {
    const arriving = collect(b, 1);
    const bytes = frame(b.mac, a.mac, Buffer.from('short'));
    a.write(1000, (buffer) => {
      t.true(buffer.length >= 1000);
      bytes.copy(buffer);
      return bytes.length;
    });
    const [got] = await arriving;
    t.deepEqual(got!.subarray(0, bytes.length), bytes);
  });

  withPair('broadcast reaches the other side', async (a, b, t) => {
    const arriving = collect(b, 1);
    send(a, frame('ff:ff:ff:ff:ff:ff', a.mac, Buffer.from('to everyone')));
    const [got] = await arriving;
    t.is(got!.subarray(14, 25).toString(), 'to everyone');
  });

  withPair('a burst of 500 frames arrives complete, and both directions work', async (a, b, t) => {
    const toB = collect(b, 500);
    for (let i = 0; i < 500; i++) {
      const payload = Buffer.alloc(60);
      payload.writeUInt32BE(i, 0);
      send(a, frame(b.mac, a.mac, payload));
    }
    const got = await toB;
    t.deepEqual(new Set(got.map((f) => f.readUInt32BE(14))).size, 500);
    const toA = collect(a, 1);
    send(b, frame(a.mac, b.mac, Buffer.from('reply')));
    t.is((await toA)[0]!.subarray(14, 19).toString(), 'reply');
  });

  withPair('oversized frames are dropped and counted, bad fill lengths are refused', async (a, b, t) => {
    const before = a.stats().txDropped;
    a.write(a.mtu + 100, (buffer) => {
      frame(b.mac, a.mac, Buffer.alloc(a.mtu + 50)).copy(buffer);
      return a.mtu + 64;
    });
    t.is(a.stats().txDropped, before + 1);
    t.throws(() => a.write(100, () => 101), { code: 'ERR_OUT_OF_RANGE' });
    t.throws(() => a.write(100, () => -1), { code: 'ERR_OUT_OF_RANGE' });
  });

  withPair('closed devices refuse writes; close is idempotent', async (a, _b, t) => {
    await a.close();
    await a.close();
    t.throws(() => a.write(64, () => 64), { code: 'ERR_NET_CLOSED' });
  });
}
