#!/usr/bin/env node
// The `keyport` command. In a checkout it runs the TypeScript sources through tsx, so
// `npm install && npx keyport …` needs no build step; `npm run build` makes dist/ for deployments.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let cli;
if (process.env.KEYPORT_USE_DIST === '1' && existsSync(built)) {
  cli = await import(built);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import('../src/cli/main.ts');
}
await cli.main(process.argv);
