// The static-website unikernel: serves the files of htdocs/ over HTTP, crunched into the build.
import { crunch, defaultNet, http, key, main, stack } from 'morgana/config';

const port = key.port('port', { default: 80, doc: 'The HTTP port.' });

export default main('./unikernel.ts', { http: http(stack(defaultNet())), htdocs: crunch('./htdocs') }, { keys: { port } });
