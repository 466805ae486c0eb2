#!/usr/bin/env node
// The `keyport` command. In a checkout it runs the TypeScript sources through tsx, so
// `npm install && npx keyport …` needs no build step; `npm run build` makes dist/ for deployments.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let cli;
const useDist = process.env.KEYPORT_USE_DIST;
if (useDist !== undefined && useDist !== '0' && useDist !== '1') {
  process.stderr.write(
    `keyport: KEYPORT_USE_DIST is 1 (run dist/) or 0 (run the sources), not "${useDist}"\n`,
  );
  process.exit(1);
}
if (useDist === '1' && !existsSync(built)) {
  process.stderr.write(
    'keyport: KEYPORT_USE_DIST=1 but dist/ is not built (npm run build): running the sources\n',
  );
}
if (useDist === '1' && existsSync(built)) {
  cli = await import(built);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import('../src/cli/main.ts');
}
await cli.main(process.argv);
