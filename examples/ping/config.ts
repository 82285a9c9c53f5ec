// The ping unikernel: pings the addresses given as boot arguments and reports round-trip times.
import { defaultNet, key, main, stack } from 'morgana/config';

const count = key.int('count', { default: 3, min: 1, doc: 'Echo requests sent to each address.' });
const interval = key.duration('interval', { default: 200, doc: 'Time between two requests to one address.' });
const timeout = key.duration('timeout', { default: 1000, doc: 'How long to wait for each reply.' });
const size = key.int('size', { default: 56, min: 0, max: 65_507, doc: 'Data bytes in each echo request.' });

export default main('./unikernel.ts', { stack: stack(defaultNet()) }, { keys: { count, interval, timeout, size } });
