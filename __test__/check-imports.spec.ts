// The import-cycle check (scripts/check-imports.ts) on small trees written here: it must
// find a TypeScript cycle (type-only imports included) and a Rust one through `crate::` and
// grouped `use` trees, resolve `super::`, and not call a child naming its parent a cycle; and
// an import from a lower room of ts/ to a higher one (or from an unknown room) is reported.
import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ROOMS, cycles, roomViolations, rustGraph, typescriptGraph } from '../scripts/check-imports.js';

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'morgana-cycles-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

test('a TypeScript cycle through a type-only import is found; a chain is not', (t) => {
  const root = tree({
    'ts/a.ts': "import { b } from './b.js';\nexport const a = b;\n",
    'ts/b.ts': "import type { C } from './sub/index.js';\nexport const b = 1 as unknown as C;\n",
    'ts/sub/index.ts': "import type { a } from '../a.js';\nexport type C = typeof a;\n",
    'ts/d.ts': "import { a } from './a.js';\nexport const d = () => import('./e.js');\nexport { a };\n",
    'ts/e.ts': "export const e = 1;\nexport * from 'node:fs';\n",
  });
  try {
    const graph = typescriptGraph(root);
    t.deepEqual([...graph.get('ts/d.ts')!].sort(), ['ts/a.ts', 'ts/e.ts']);
    t.deepEqual(cycles(graph), [['ts/a.ts', 'ts/b.ts', 'ts/sub/index.ts']]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a Rust cycle between modules of one crate is found; child-to-parent and cross-crate uses are not cycles', (t) => {
  const root = tree({
    'crates/one/src/lib.rs': 'pub mod engine;\npub mod conn;\npub mod wire;\npub use engine::Engine;\n',
    'crates/one/src/engine.rs': 'use crate::{conn::{Conn, State}, wire};\npub struct Engine;\n',
    // A comment naming crate::engine must not count; the inline path below must.
    'crates/one/src/conn.rs': '// use crate::engine::Nothing;\npub struct Conn(crate::engine::Engine);\npub enum State {}\n',
    'crates/one/src/wire/mod.rs': 'pub mod ipv4;\nuse ipv4::Header;\n',
    'crates/one/src/wire/ipv4.rs': 'use super::super::Engine;\nuse super::checksum;\npub struct Header;\n',
    'crates/two/src/lib.rs': 'mod a;\nmod b;\n',
    'crates/two/src/a.rs': 'use one::wire;\nuse crate::b::B;\npub struct A;\n',
    'crates/two/src/b.rs': 'pub struct B;\n',
  });
  try {
    const graph = rustGraph(root);
    t.deepEqual([...graph.get('crates/one/src/engine.rs')!].sort(), ['crates/one/src/conn.rs', 'crates/one/src/wire/mod.rs']);
    t.deepEqual([...graph.get('crates/one/src/wire/mod.rs')!], ['crates/one/src/wire/ipv4.rs']);
    // ipv4.rs names only its ancestors (wire, the crate root): no edge.
    t.deepEqual([...graph.get('crates/one/src/wire/ipv4.rs')!], []);
    t.deepEqual([...graph.get('crates/two/src/a.rs')!], ['crates/two/src/b.rs']);
    t.deepEqual(cycles(graph), [['crates/one/src/conn.rs', 'crates/one/src/engine.rs']]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('imports between rooms follow the table: wire may not import stack, stack may import wire', (t) => {
  const root = tree({
    'ts/errors.ts': 'export class E {}\n',
    'ts/wire/udp.ts': "import { E } from '../errors.js';\nimport type { Udp } from '../stack/udp.js';\nexport type X = [E, Udp];\n",
    'ts/stack/udp.ts': "import { udpHeader } from '../wire/udp.js';\nexport class Udp {}\nexport { udpHeader };\n",
    'ts/newroom/a.ts': "import { E } from '../errors.js';\nexport { E };\n",
    'ts/index.ts': "export * from './stack/udp.js';\n",
  });
  try {
    t.deepEqual(roomViolations(typescriptGraph(root)), [
      "ts/newroom/a.ts -> ts/errors.ts: room 'newroom' is not in ROOMS (scripts/check-imports.ts, docs/architecture.md)",
      "ts/wire/udp.ts -> ts/stack/udp.ts: room 'wire' may not import room 'stack'",
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the room table is layered: each room may import only rooms listed before it', (t) => {
  const order = Object.keys(ROOMS);
  for (const [room, allowed] of Object.entries(ROOMS)) {
    for (const lower of allowed) t.true(order.indexOf(lower) >= 0 && order.indexOf(lower) < order.indexOf(room), `${room} -> ${lower}`);
  }
});
