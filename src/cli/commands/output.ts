export interface GlobalOptions {
  url?: string;
  json?: boolean;
}

/** `--json` prints the API's object as is (for scripts); otherwise the human rendering. */
export function output(globals: GlobalOptions, value: unknown, human: () => string): void {
  process.stdout.write(globals.json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}
