// A child process for the TAP life-cycle tests (__test__/tap.spec.ts). Plain ESM, so it starts
// without a TypeScript loader; `morgana` resolves to this package's dist/ by self-reference.
//
//   node tap-child.mjs open <netns?>          opens mtap0 (in <netns> if given), prints the
//                                            result as JSON: {ok} or {code, message}
//   node tap-child.mjs exit-flowing <netns>   two TAPs on a bridge, frames flowing, then
//                                            process.exit(0) with both still open
//   node tap-child.mjs close <netns>          opens and closes: the process must end by itself
//   node tap-child.mjs keep-open <netns>      opens and never closes: the process must stay up
import { execFileSync } from 'node:child_process';
import { openTap } from 'morgana';

const [mode, netns] = process.argv.slice(2);
const nsOption = netns ? { netns } : {};

function frame(dst, src, n) {
  const out = Buffer.alloc(60);
  Buffer.from(dst.replaceAll(':', ''), 'hex').copy(out, 0);
  Buffer.from(src.replaceAll(':', ''), 'hex').copy(out, 6);
  out.writeUInt16BE(0x88b5, 12);
  out.writeUInt32BE(n, 14);
  return out;
}

if (mode === 'open') {
  try {
    const tap = await openTap({ name: 'mtap0', ...nsOption });
    await tap.close();
    console.log(JSON.stringify({ ok: true }));
  } catch (error) {
    console.log(JSON.stringify({ code: error.code, message: error.message, name: error.name }));
  }
} else if (mode === 'exit-flowing') {
  const ip = (...args) => execFileSync('ip', ['-n', netns, ...args]);
  const a = await openTap({ name: 'mtap0', netns });
  const b = await openTap({ name: 'mtap1', netns });
  ip('link', 'add', 'mbr0', 'type', 'bridge');
  for (const name of ['mtap0', 'mtap1']) {
    ip('link', 'set', name, 'master', 'mbr0');
    ip('link', 'set', name, 'up');
  }
  ip('link', 'set', 'mbr0', 'up');
  let received = 0;
  b.listen(() => {
    received++;
    if (received === 2000) {
      console.log(`exiting with 2 TAPs open after ${received} frames`);
      process.exit(0);
    }
  });
  let n = 0;
  const pump = () => {
    for (let i = 0; i < 64; i++) {
      const bytes = frame(b.mac, a.mac, n++);
      a.write(bytes.length, (buffer) => bytes.copy(buffer));
    }
    setImmediate(pump);
  };
  pump();
  setTimeout(() => {
    console.log(`only ${received} frames arrived`);
    process.exit(3);
  }, 15_000).unref();
} else if (mode === 'close') {
  const tap = await openTap({ name: 'mtap0', ...nsOption });
  tap.listen(() => {});
  await tap.close();
  console.log('closed');
} else if (mode === 'keep-open') {
  const tap = await openTap({ name: 'mtap0', ...nsOption });
  tap.listen(() => {});
  console.log('open');
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
