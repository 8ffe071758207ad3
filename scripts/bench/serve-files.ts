/**
 * `node dist/scripts/bench/serve-files.js <dir>`: the importer tests' file server
 * (test/volumes/http-server.ts) as its own process, so in bench:images the server does not share
 * an event loop with the importer being measured. Prints its base URL on stdout, serves until
 * SIGTERM.
 */
import { FileServer } from '../../test/volumes/http-server';

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (dir === undefined) throw new Error('usage: serve-files <dir>');
  const srv = await new FileServer(dir).start();
  process.stdout.write(`${srv.url}\n`);
  process.once('SIGTERM', () => void srv.stop().then(() => process.exit(0)));
}

void main();
