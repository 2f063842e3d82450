// Runs the sim xenstored alone on a unix socket until SIGTERM/SIGINT:
//   node --import tsx src/sim/xenstored/standalone.ts SOCKETPATH
// Prints "ready <socket>" on stdout once listening. Logs (pino) go to stderr at XENSTORED_LOG_LEVEL (default warn).
import { pino } from 'pino';
import { SimXenstored } from './index.js';

async function run(argv: string[]): Promise<number> {
  const socketPath = argv[0];
  if (!socketPath || argv.length > 1) {
    process.stderr.write('usage: standalone.ts SOCKETPATH\n');
    return 2;
  }
  const logger = pino({ level: process.env.XENSTORED_LOG_LEVEL ?? 'warn' }, pino.destination(2));
  const xs = new SimXenstored({ logger });
  await xs.listen(socketPath);
  process.stdout.write(`ready ${socketPath}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await xs.close();
  return 0;
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`xenstored: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
