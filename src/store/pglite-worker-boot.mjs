// Starts the database thread from the TypeScript sources (a checkout, tests): a worker does not
// inherit the main thread's tsx loader, so it registers its own, then loads the worker.
import { register } from 'tsx/esm/api';

register();
await import('./pglite-worker.ts');
