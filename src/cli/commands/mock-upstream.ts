/**
 * `keyport mock-upstream`: a deterministic fake of the OpenAI API in the foreground, to try the
 * gateway without a model server and to benchmark it. Loaded only when the command runs.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { UserError } from '../../core/user-error.ts';

interface MockUpstreamCommandOptions {
  port: number;
  host: string;
  delayMs: number;
  chunkDelayMs: number;
  chunkCount: number;
}

const integerAtLeast = (min: number) => (text: string) => {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(`expected an integer ≥ ${min}`);
  }
  return value;
};

export function registerMockUpstreamCommands(program: Command): void {
  program
    .command('mock-upstream')
    .description(
      'serve a deterministic fake of the OpenAI API (/v1) in the foreground: no model server needed',
    )
    .option('--port <port>', 'port to listen on (0: any free port)', integerAtLeast(0), 9090)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--delay-ms <ms>', 'wait before the first byte of every response', integerAtLeast(0), 0)
    .option('--chunk-delay-ms <ms>', 'wait between streamed chunks', integerAtLeast(0), 0)
    .option('--chunk-count <n>', 'chunks per streamed reply', integerAtLeast(1), 8)
    .action(async (options: MockUpstreamCommandOptions) => {
      const { startMockUpstream } = await import('../../gateway/mock-upstream.ts');
      const mock = await startMockUpstream(options).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'EADDRINUSE') {
          throw new UserError(
            `${options.host}:${options.port} is already in use. Stop it or choose another --port.`,
          );
        }
        throw error;
      });
      const stop = () => {
        mock.close().then(
          () => process.exit(0),
          (error: Error) => {
            process.stderr.write(`keyport: ${error.message}\n`);
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      process.stdout.write(`Mock upstream listening at ${mock.url}/v1\n`);
    });
}
