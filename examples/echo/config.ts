// The echo unikernel: TCP and UDP echo (RFC 862) on one port.
import { defaultNet, key, main, stack } from 'morgana/config';

const port = key.port('port', { default: 7, doc: 'The TCP and UDP port to echo on.' });

export default main('./unikernel.ts', { stack: stack(defaultNet()) }, { keys: { port } });
